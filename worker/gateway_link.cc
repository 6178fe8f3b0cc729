#include "worker/gateway_link.h"

#include <optional>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "wire/mpi_frames.h"
#include "worker/task_runner.h"

namespace mpigate::worker {
namespace {

// A result sent this long after the worker last heard from the gateway finds the gateway's MPI
// thread past its hot polls (a few hundred microseconds), sleeping between polls for up to a
// millisecond: it is rung back. Shorter tasks are caught by the hot polls; longer ones are rung
// back at most once a millisecond, a sendto(2) here and a wake-up there.
constexpr absl::Duration kRingBackAfter = absl::Milliseconds(1);

}  // namespace

bool Heard::Cancels(uint64_t task_key, bool& force) const {
  bool named = false;
  for (const wire::CancelFrame& cancel : cancels) {
    if (cancel.task_key() != task_key) continue;
    named = true;
    force = force || cancel.force();
  }
  return named;
}

absl::Status Heartbeat::MaybeSend(MPI_Comm gateway) {
  if (interval_ == absl::InfiniteDuration() || absl::Now() < next_) return absl::OkStatus();
  return Send(gateway);
}

absl::Status Heartbeat::Quiet(MPI_Comm gateway) {
  if (interval_ == absl::InfiniteDuration() || quiet_) return absl::OkStatus();
  quiet_ = true;
  return Send(gateway);
}

void Heartbeat::Loud() {
  if (!quiet_) return;
  quiet_ = false;
  next_ = absl::InfinitePast();
}

absl::Status Heartbeat::Send(MPI_Comm gateway) {
  wire::HeartbeatFrame beat;
  beat.set_quiet(quiet_);
  next_ = absl::Now() + interval_;
  return wire::SendFrame(gateway, kGatewayRank, wire::Tag::kHeartbeat, beat);
}

const wire::Doorbell* GatewayLink::OpenDoorbell() {
  if (absl::StatusOr<wire::Doorbell> doorbell = wire::Doorbell::Open(); doorbell.ok()) {
    doorbell_ = *std::move(doorbell);
  }
  return doorbell_.has_value() ? &*doorbell_ : nullptr;
}

absl::StatusOr<Heard> GatewayLink::Hear() {
  Heard heard;
  while (!heard.shutdown) {
    absl::StatusOr<std::optional<wire::ReceivedMessage>> received =
        wire::TryReceive(gateway_, kGatewayRank);
    if (!received.ok()) return received.status();
    if (!received->has_value()) break;
    if (!heard.anything) last_heard_ = absl::Now();
    heard.anything = true;
    wire::ReceivedMessage& message = **received;
    if (message.tag == wire::Tag::kShutdown) {
      wire::ShutdownFrame shutdown;
      if (absl::Status status = wire::Decode(message.bytes, shutdown); !status.ok()) return status;
      heard.shutdown = true;
      disconnect_ = !shutdown.skip_disconnect();
      continue;
    }
    if (message.tag == wire::Tag::kHeartbeat) {
      wire::HeartbeatFrame asked;
      if (absl::Status status = wire::Decode(message.bytes, asked); !status.ok()) return status;
      heartbeat_.Start(absl::Milliseconds(asked.interval_ms()));
      continue;
    }
    if (message.tag == wire::Tag::kTask) {
      if (absl::Status status = backlog_.Add(std::move(message.bytes)); !status.ok()) {
        return status;
      }
      continue;
    }
    if (message.tag == wire::Tag::kTasks) {
      wire::FrameBatch batch;
      if (absl::Status status = wire::Decode(message.bytes, batch); !status.ok()) return status;
      for (std::string& frame : *batch.mutable_frames()) {
        if (absl::Status status = backlog_.Add(std::move(frame)); !status.ok()) return status;
      }
      continue;
    }
    if (message.tag != wire::Tag::kCancel) {
      return absl::InternalError(absl::StrCat("worker received a frame with unexpected tag ",
                                              static_cast<int>(message.tag)));
    }
    wire::CancelFrame cancel;
    if (absl::Status status = wire::Decode(message.bytes, cancel); !status.ok()) return status;
    if (!backlog_.Drop(cancel.task_key())) {
      heard.cancels.push_back(std::move(cancel));
      continue;
    }
    if (absl::Status status = wire::SendFrame(gateway_, kGatewayRank, wire::Tag::kResult,
                                              DroppedBeforeStart(cancel.task_key()));
        !status.ok()) {
      return status;
    }
  }
  ring_unheard_ = ring_unheard_ && !heard.anything;
  if (!heard.shutdown) {
    if (absl::Status status = heartbeat_.MaybeSend(gateway_); !status.ok()) return status;
  }
  return heard;
}

absl::Status GatewayLink::Send(wire::Tag tag, const google::protobuf::MessageLite& frame) {
  if (absl::Status status = FlushResults(); !status.ok()) return status;
  return wire::SendFrame(gateway_, kGatewayRank, tag, frame);
}

absl::Status GatewayLink::Answer(const wire::ResultFrame& result) {
  if (absl::Status status = Send(wire::Tag::kResult, result); !status.ok()) return status;
  RingBackIfAsleep();
  return absl::OkStatus();
}

absl::Status GatewayLink::ForwardProgress(uint64_t task_key, TaskSignals& signals) {
  wire::ProgressFrame progress;
  if (!signals.TakeProgress(progress)) return absl::OkStatus();
  progress.set_task_key(task_key);
  return Send(wire::Tag::kProgress, progress);
}

absl::Status GatewayLink::AddRunnerResult(std::string result, bool more_at_hand) {
  if (ResultBatch::GoesAlone(result.size())) {
    if (absl::Status status = FlushResults(); !status.ok()) return status;
  }
  results_.Add(std::move(result));
  if (more_at_hand && !results_.full()) return absl::OkStatus();
  return FlushResults();
}

absl::Status GatewayLink::FlushResults() {
  if (results_.empty()) return absl::OkStatus();
  if (absl::Status status = results_.Flush([this](wire::Tag tag, absl::string_view bytes) {
        return wire::SendEncoded(gateway_, kGatewayRank, tag, bytes);
      });
      !status.ok()) {
    return status;
  }
  RingBackIfAsleep();
  return absl::OkStatus();
}

void GatewayLink::RingBackIfAsleep() {
  if (!gateway_rings_ || !backlog_.empty()) return;
  if (!woken_by_ring_ && absl::Now() - last_heard_ < kRingBackAfter) return;
  woken_by_ring_ = false;
  doorbell_->RingBack();
}

absl::Status GatewayLink::SayGoodbye() { return Send(wire::Tag::kShutdown, wire::ShutdownFrame()); }

bool GatewayLink::WaitIdle(absl::Duration delay) {
  if (!doorbell_.has_value()) {
    absl::SleepFor(delay);
    return false;
  }
  if (!doorbell_->Wait(delay)) return false;
  gateway_rings_ = true;
  woken_by_ring_ = true;
  return true;
}

bool GatewayLink::TakeRing() {
  if (!gateway_rings_ || !doorbell_->Wait(absl::ZeroDuration())) return false;
  ring_unheard_ = true;
  return true;
}

}  // namespace mpigate::worker
