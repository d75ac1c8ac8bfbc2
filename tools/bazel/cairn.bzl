"""Cairn's Bazel macros: the native C++ rules with the project's flags.

Mirrors the CMake build: `-Wall -Wextra -Wno-unused-parameter` (C++20 comes
from .bazelrc), includes rooted at the repository, system libraries from
//third_party (e.g. "//third_party:absl", "//third_party:grpc").

Libraries and binaries: the macros stop at the flags, every BUILD file
spells out one stanza per target (name, srcs, hdrs, deps), so a target's
sources and dependencies read where it stands; the shape repeating across
BUILD files is on purpose. Tests of one kind share a macro that adds what
every test of that kind needs (cairn_service_test, cairn_shim_test,
cairn_server_process_test), so their stanzas name only their own extras.

    load("//tools/bazel:cairn.bzl", "cairn_cc_library", "cairn_cc_test")

    cairn_cc_library(
        name = "cas",                       # CMake: cairn_cas
        srcs = ["digest.cc"],
        hdrs = ["digest.h"],
        deps = ["//third_party:absl", "//third_party:openssl"],
    )

    cairn_cc_test(
        name = "digest_test",               # CMake: cairn_test(digest_test ...)
        srcs = ["digest_test.cc"],
        deps = ["//cas"],                   # gtest, gmock and main are added
    )
"""

# Warnings as in the top-level CMakeLists.txt.
CAIRN_COPTS = [
    "-Wall",
    "-Wextra",
    "-Wno-unused-parameter",
]

def cairn_cc_library(name, copts = [], visibility = ["//visibility:public"], **kwargs):
    """A cc_library with Cairn's warnings, visible to the whole repository."""
    native.cc_library(
        name = name,
        copts = CAIRN_COPTS + copts,
        visibility = visibility,
        **kwargs
    )

def cairn_cc_binary(name, copts = [], visibility = ["//visibility:public"], **kwargs):
    """A cc_binary with Cairn's warnings (e.g. cairn-server), visible to tests."""
    native.cc_binary(
        name = name,
        copts = CAIRN_COPTS + copts,
        visibility = visibility,
        **kwargs
    )

def cairn_cc_test(name, deps = [], copts = [], main = True, size = "medium", **kwargs):
    """A GoogleTest binary run by `bazel test`, like CMake's cairn_test().

    Links gtest and gmock, and gtest's main() unless `main = False` (for a
    test that defines its own). Tests that need the real binaries, network
    peers or a Go toolchain should pass `tags = ["manual"]`: CMake/ctest runs
    them, `bazel test //...` skips them, `bazel test //tests/integration:x`
    still runs one explicitly. `size` defaults to "medium" (a 300 s
    timeout; the store conformance suite takes ~30 s on 2 busy cores).
    """
    gtest = "//third_party:gtest_main" if main else "//third_party:gtest"
    native.cc_test(
        name = name,
        copts = CAIRN_COPTS + copts,
        deps = deps + ([] if gtest in deps else [gtest]),
        size = size,
        **kwargs
    )

def _with(base, deps):
    """`base` followed by the labels of `deps` it does not already hold."""
    return base + [d for d in deps if d not in base]

def cairn_service_test(name, deps = [], **kwargs):
    """A cairn_cc_test of services through the in-process server.

    Its source is NAME.cc; it gets //cas, //server, the fixture
    //tests/testutil:service_fixture, //tests/testutil and absl, plus `deps`.
    """
    cairn_cc_test(
        name = name,
        srcs = [name + ".cc"],
        deps = _with([
            "//cas",
            "//server",
            "//tests/testutil",
            "//tests/testutil:service_fixture",
            "//third_party:absl",
        ], deps),
        **kwargs
    )

def cairn_shim_test(name, deps = [], **kwargs):
    """A cairn_cc_test of the GOCACHEPROG shim library (//client:gocacheprog).

    Its source is NAME.cc; it gets //client:gocacheprog, //cas and absl, plus
    `deps`.
    """
    cairn_cc_test(
        name = name,
        srcs = [name + ".cc"],
        deps = _with([
            "//cas",
            "//client:gocacheprog",
            "//third_party:absl",
        ], deps),
        **kwargs
    )

def cairn_server_process_test(name, deps = [], data = [], local_defines = [], size = "large", **kwargs):
    """A cairn_cc_test that runs the real cairn-server through the harness.

    Like CMake's cairn_server_process_test(): its source is NAME.cc; the test
    gets the binary as data, CAIRN_SERVER_BINARY (its path relative to the
    runfiles directory) and the harness //tests/testutil:server_process
    (ServerProcess, Client).
    """
    cairn_cc_test(
        name = name,
        srcs = [name + ".cc"],
        size = size,
        data = data + ["//server:cairn-server"],
        local_defines = local_defines + ["CAIRN_SERVER_BINARY=\\\"server/cairn-server\\\""],
        deps = deps + [
            "//cas",
            "//tests/testutil",
            "//tests/testutil:server_process",
            "//third_party:absl",
        ],
        **kwargs
    )

def cairn_go_sh_test(name, srcs, args, data = [], **kwargs):
    """A tests/integration/ shell test of the shim with the real go command.

    Gets cairn-gocacheprog, cairn-server, lib.sh (the scripts' shared helpers)
    and testdata/ as data; `args` name them with $(rootpath ...). Tagged
    manual (go must be on PATH: `bazel test --config=integration`), and
    exclusive and local like ctest's RUN_SERIAL.
    """
    native.sh_test(
        name = name,
        size = "large",
        srcs = srcs,
        args = args,
        data = data + [
            "lib.sh",
            "//client:cairn-gocacheprog",
            "//server:cairn-server",
        ] + native.glob(["testdata/**"]),
        tags = [
            "exclusive",
            "local",
            "manual",
        ],
        **kwargs
    )
