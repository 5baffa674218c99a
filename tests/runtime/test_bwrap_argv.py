"""The bubblewrap argv, built with no sandbox at all (like kubespawner's test_objects.py)."""

from __future__ import annotations

import pytest

from replicas.runtime.bwrap import SandboxPolicy, build_bwrap_argv

HOME = "/data/workspaces/ws1/home"
RUN = "/data/workspaces/ws1/run"


def options(argv: list[str]) -> list[str]:
    """The argv up to the command separator."""
    return argv[: argv.index("--")]


def positions(argv: list[str], option: str) -> list[int]:
    return [i for i, word in enumerate(options(argv)) if word == option]


def pairs(argv: list[str], option: str) -> list[tuple[str, ...]]:
    """(target,) or (source, target) for each use of `option`."""
    width = 3 if option in ("--ro-bind", "--bind") else 2
    return [tuple(argv[i + 1 : i + width]) for i in positions(argv, option)]


def test_system_is_read_only_with_private_dev_proc_and_tmp():
    argv = build_bwrap_argv("/usr/bin/bwrap", SandboxPolicy(home=HOME, run_dir=RUN), ["engine"])
    assert argv[:5] == ["/usr/bin/bwrap", "--ro-bind", "/", "/", "--dev"]
    assert ("/dev",) in pairs(argv, "--dev")
    assert ("/proc",) in pairs(argv, "--proc")
    assert pairs(argv, "--tmpfs")[0] == ("/tmp",)


def test_home_and_run_dir_are_the_only_writable_binds_at_their_real_paths():
    argv = build_bwrap_argv("bwrap", SandboxPolicy(home=HOME, run_dir=RUN, ro_binds=["/opt/tools"]), ["engine"])
    assert pairs(argv, "--bind") == [(HOME, HOME), (RUN, RUN)]
    assert ("/opt/tools", "/opt/tools") in pairs(argv, "--ro-bind")


def test_hidden_dirs_are_masked_before_binds_and_made_read_only_after():
    policy = SandboxPolicy(home=HOME, run_dir=RUN, hidden_dirs=["/data", "/srv/db"],
                           ro_binds=["/data/tools/node"])
    argv = build_bwrap_argv("bwrap", policy, ["engine"])
    tmpfs = positions(argv, "--tmpfs")
    assert [argv[i + 1] for i in tmpfs] == ["/tmp", "/data", "/srv/db"]
    binds = positions(argv, "--bind") + positions(argv, "--ro-bind")[1:]  # [0] is "/"
    remounts = positions(argv, "--remount-ro")
    assert [argv[i + 1] for i in remounts] == ["/data", "/srv/db"]
    # A mount point on a tmpfs must be created while it is writable: tmpfs, then binds, then remount.
    assert max(tmpfs) < min(binds)
    assert max(binds) < min(remounts)


def test_hidden_dir_inside_another_is_masked_once_and_parents_come_first():
    policy = SandboxPolicy(home=HOME, run_dir=RUN, hidden_dirs=["/data/db", "/data", "/data/db/x"],
                           ro_binds=["/data/tools/a/b", "/data/tools"])
    argv = build_bwrap_argv("bwrap", policy, ["engine"])
    assert pairs(argv, "--tmpfs") == [("/tmp",), ("/data",)]
    assert pairs(argv, "--ro-bind")[1:] == [("/data/tools", "/data/tools"), ("/data/tools/a/b", "/data/tools/a/b")]


def test_namespaces_capabilities_and_no_network_unshare():
    argv = build_bwrap_argv("bwrap", SandboxPolicy(home=HOME, run_dir=RUN), ["engine"])
    opts = options(argv)
    for flag in ("--unshare-pid", "--unshare-ipc", "--unshare-uts"):
        assert flag in opts
    assert "--unshare-net" not in opts and "--unshare-all" not in opts
    assert opts[opts.index("--cap-drop") + 1] == "ALL"
    # No new session: the tree stays in the leader's process group, which stop signals.
    assert "--new-session" not in opts


def test_die_with_parent_only_when_asked():
    policy = SandboxPolicy(home=HOME, run_dir=RUN)
    assert "--die-with-parent" not in build_bwrap_argv("bwrap", policy, ["engine"])
    assert "--die-with-parent" in options(build_bwrap_argv("bwrap", policy, ["ls"], die_with_parent=True))


def test_command_follows_the_separator_verbatim_and_cwd_defaults_to_home():
    command = ["python", "-c", "print('--ro-bind / /')", "--"]
    argv = build_bwrap_argv("bwrap", SandboxPolicy(home=HOME, run_dir=RUN), command)
    assert argv[argv.index("--") + 1 :] == command
    assert argv[positions(argv, "--chdir")[0] + 1] == HOME
    other = build_bwrap_argv("bwrap", SandboxPolicy(home=HOME, run_dir=RUN), ["ls"], cwd=HOME + "/workspaces/r")
    assert other[positions(other, "--chdir")[0] + 1] == HOME + "/workspaces/r"


def test_no_environment_in_the_argv():
    argv = build_bwrap_argv("bwrap", SandboxPolicy(home=HOME, run_dir=RUN), ["engine"])
    assert "--setenv" not in argv and "--clearenv" not in argv


@pytest.mark.parametrize("bad", ["relative/path", "/data/../etc", "/"])
def test_rejects_relative_unnormalized_and_root_paths(bad):
    with pytest.raises(ValueError):
        build_bwrap_argv("bwrap", SandboxPolicy(home=HOME, run_dir=RUN, hidden_dirs=[bad]), ["engine"])


def test_rejects_an_empty_command():
    with pytest.raises(ValueError):
        build_bwrap_argv("bwrap", SandboxPolicy(home=HOME, run_dir=RUN), [])
