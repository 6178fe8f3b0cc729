// The live page's script and style, live.js and live.css, as the build embedded them
// (the genrule in BUILD.bazel writes assets.cc).
#ifndef MPIGATE_SERVER_LIVE_PAGE_ASSETS_H_
#define MPIGATE_SERVER_LIVE_PAGE_ASSETS_H_

namespace mpigate::server::live_page_assets {

extern const char kLiveScript[];
extern const char kLiveStyle[];

}  // namespace mpigate::server::live_page_assets

#endif  // MPIGATE_SERVER_LIVE_PAGE_ASSETS_H_
