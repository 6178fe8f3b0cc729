"""Hands on Bazel's built-in C++ rules under the names @bazel_tools loads from rules_cc.

Debian's bazel-rules-cc needs a newer Bazel than Debian's bazel-bootstrap (4.2.3), and the real
rules_cc would be downloaded. This shim keeps the build offline.
"""

def cc_binary(**attrs):
    native.cc_binary(**attrs)

def cc_library(**attrs):
    native.cc_library(**attrs)

def cc_test(**attrs):
    native.cc_test(**attrs)

def cc_import(**attrs):
    native.cc_import(**attrs)

def cc_proto_library(**attrs):
    native.cc_proto_library(**attrs)

def cc_toolchain(**attrs):
    native.cc_toolchain(**attrs)

def cc_toolchain_suite(**attrs):
    native.cc_toolchain_suite(**attrs)

def objc_library(**attrs):
    native.objc_library(**attrs)
