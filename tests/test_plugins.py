"""The plugin host: entry-point loading, validation, allow/deny lists, `halo plugins`."""

from __future__ import annotations

import json
import types

import pytest

from halo_core import Availability, Backend, PluginHost, ToolCommand, hookimpl
from halo_core.errors import HaloError, UnknownName


def _backend_plugin(*names: str) -> types.SimpleNamespace:
    """A plugin object registering one trivial Backend per name."""
    def make(backend_name):
        class B(Backend):
            name = backend_name

            def availability(self):
                return Availability(True)

            def command(self, tool):
                return ToolCommand([tool])
        return B()

    @hookimpl
    def register_backends(register):
        for n in names:
            register(make(n))

    return types.SimpleNamespace(register_backends=register_backends)


def test_builtins_load_through_entry_points():
    host = PluginHost.from_entry_points()
    infos = {i.name: i for i in host.info()}
    assert {"native", "pypi", "file"} <= set(infos)
    assert infos["native"].source == "builtin"
    assert infos["native"].distribution == "halo-llm"
    assert infos["native"].registers == {"backends": ("native",)}
    assert infos["pypi"].registers == {"model_sources": ("pypi",)}
    assert all(i.error is None for i in infos.values())


def test_registered_plugin_is_listed_and_found():
    host = PluginHost()
    host.register(_backend_plugin("alpha", "beta"), "twobackends")
    try:
        assert sorted(host.backends()) == ["alpha", "beta"]
        info = host.info()[0]
        assert info.name == "twobackends"
        assert info.registers == {"backends": ("alpha", "beta")}
        assert info.hooks == ("register_backends",)
    finally:
        host.unregister("twobackends")
    assert host.backends() == {}


def test_unknown_backend_names_the_known_ones():
    host = PluginHost()
    host.register(_backend_plugin("alpha"), "p")
    with pytest.raises(UnknownName, match=r"^unknown backend 'gamma' \(known: alpha\)$"):
        host.backend("gamma")


def test_duplicate_name_is_an_error_of_the_second_plugin(capsys):
    host = PluginHost()
    host.register(_backend_plugin("alpha"), "first")
    host.register(_backend_plugin("alpha"), "second")
    assert list(host.backends()) == ["alpha"]
    errors = {i.name: i.error for i in host.info()}
    assert errors["first"] is None
    assert errors["second"] == "register_backends failed: Backend 'alpha' is already registered by 'first'"
    assert "plugin 'second'" in capsys.readouterr().err


def test_misspelt_hook_is_rejected_with_a_suggestion():
    @hookimpl
    def register_backend(register):  # missing "s"
        pass

    host = PluginHost()
    host.register(types.SimpleNamespace(register_backend=register_backend), "typo")
    info = host.info()[0]
    assert info.error == "unknown hook 'register_backend' (did you mean register_backends?)"
    assert not host.pm.has_plugin("typo")
    host.pm.check_pending()  # nothing unvalidated is left behind


def test_hooks_get_the_host_they_run_in():
    seen = []

    @hookimpl
    def register_backends(register, host):
        seen.append(host)
        register(Wrapper(host))

    class Wrapper(Backend):
        name = "wrapper"

        def __init__(self, host):
            self.host = host

        def availability(self):  # looks another plugin's backend up when asked, not before
            return self.host.backend("alpha").availability()

        def command(self, tool):
            return self.host.backend("alpha").command(tool)

    host = PluginHost()
    host.register(types.SimpleNamespace(register_backends=register_backends), "wrapping")
    host.register(_backend_plugin("alpha"), "plain")  # the old one-argument hook still works
    assert sorted(host.backends()) == ["alpha", "wrapper"]
    assert seen == [host]
    assert host.backend("wrapper").command("llama-bench") == ToolCommand(["llama-bench"])


def test_a_lookup_while_registering_is_the_plugins_error(capsys):
    @hookimpl
    def register_backends(register, host):
        host.backend("alpha")

    host = PluginHost()
    host.register(_backend_plugin("alpha"), "plain")
    host.register(types.SimpleNamespace(register_backends=register_backends), "eager")
    assert list(host.backends()) == ["alpha"]
    errors = {i.name: i.error for i in host.info()}
    assert errors == {"plain": None, "eager": (
        "register_backends failed: asked for a registered object while plugins are still "
        "registering: keep the host and look it up later")}
    assert "plugin 'eager': register_backends failed" in capsys.readouterr().err


def test_backend_options_go_to_the_backends_that_take_them():
    class Tunable(Backend):
        name = "tunable"
        option_help = {"flavour": "which flavour"}

        def __init__(self, flavour="plain"):
            self.flavour = flavour

        def configure(self, options):
            return Tunable(options["flavour"])

        def availability(self):
            return Availability(True)

        def command(self, tool):
            return ToolCommand([tool, self.flavour])

    @hookimpl
    def register_backends(register):
        register(Tunable())

    host = PluginHost()
    host.register(types.SimpleNamespace(register_backends=register_backends), "tunable")
    host.register(_backend_plugin("alpha"), "plain")
    tunable, alpha = host.configured_backends(["tunable", "alpha"], {"flavour": "spicy"})
    assert tunable.command("x").argv == ("x", "spicy")
    assert alpha is host.backend("alpha") and host.backend("tunable").flavour == "plain"
    assert host.configured_backends(["alpha"]) == [alpha]
    with pytest.raises(HaloError, match=r"^no selected backend takes the option 'colour' "
                                        r"\(tunable: flavour; alpha: none\)$"):
        host.configured_backends(["tunable", "alpha"], {"colour": "red"})
    with pytest.raises(HaloError, match=r"^backend 'alpha' takes no option 'flavour'$"):
        alpha.configure({"flavour": "spicy"})


def test_registering_the_wrong_type_is_reported():
    @hookimpl
    def register_backends(register):
        register("not a backend")

    host = PluginHost()
    host.register(types.SimpleNamespace(register_backends=register_backends), "wrong")
    assert host.backends() == {}
    assert "which is not a Backend" in host.info()[0].error


@pytest.fixture
def fake_dist(tmp_path):
    """A distribution on sys.path whose `halo` entry points we choose (as pip would install)."""
    def make(name: str, entry_points: dict[str, str], modules: dict[str, str]):
        dist = tmp_path / f"{name.replace('-', '_')}-1.2.3.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.2.3\n")
        lines = "\n".join(f"{k} = {v}" for k, v in entry_points.items())
        (dist / "entry_points.txt").write_text(f"[halo]\n{lines}\n")
        for mod, source in modules.items():
            (tmp_path / f"{mod}.py").write_text(source)
        return tmp_path
    return make


BROKEN = "raise ImportError('needs libfoo')\n"
GOOD = """
from halo_core.plugin_api import Availability, Backend, ToolCommand, hookimpl

class Extra(Backend):
    name = "extra"
    def availability(self):
        return Availability(False, "extra is a test double", "nothing to do")
    def command(self, tool):
        return ToolCommand([tool])

@hookimpl
def register_backends(register):
    register(Extra())
"""


def test_cli_lists_third_party_and_survives_a_broken_plugin(fake_dist, halo):
    path = fake_dist("halo-thirdparty", {"extra": "halo_extra_mod", "broken": "halo_broken_mod"},
                     {"halo_extra_mod": GOOD, "halo_broken_mod": BROKEN})
    done = halo("plugins", "--json", env={"PYTHONPATH": str(path)})
    assert done.returncode == 0, done.stderr
    infos = {i["name"]: i for i in json.loads(done.stdout)["plugins"]}
    assert infos["extra"]["source"] == "entry-point"
    assert infos["extra"]["distribution"] == "halo-thirdparty"
    assert infos["extra"]["version"] == "1.2.3"
    assert infos["extra"]["registers"] == {"backends": ["extra"]}
    assert infos["broken"]["error"] == "import failed: ImportError: needs libfoo"
    assert "plugin 'broken' not loaded: import failed: ImportError: needs libfoo" in done.stderr
    assert {"native", "pypi", "file"} <= set(infos)

    done = halo("backends", "--json", env={"PYTHONPATH": str(path)})
    rows = {r["name"]: r for r in json.loads(done.stdout)}
    assert rows["extra"]["available"] is False
    assert rows["extra"]["reason"] == "extra is a test double"


BROKEN_HOOKS = """
import click
from halo_core.plugin_api import hookimpl

@hookimpl
def {hook}({args}):
    {body}
"""


def test_a_broken_hook_of_any_kind_never_takes_the_cli_down(fake_dist, halo):
    plugins = {
        "bad_backends": ("register_backends", "register", "raise RuntimeError('no GPU here')"),
        "bad_sources": ("register_model_sources", "register, host", "1 / 0"),
        "bad_tuners": ("register_tuners", "register", "raise KeyError('grub')"),
        "bad_suites": ("register_eval_suites", "register", "register('a suite')"),
        "bad_commands": ("register_commands", "cli", "raise OSError('no config')"),
        "greedy_commands": ("register_commands", "cli",
                            "cli.add_command(click.Command('bench', callback=lambda: print('mine')))"),
    }
    path = fake_dist("halo-broken-hooks", {n: f"halo_{n}_mod" for n in plugins},
                     {f"halo_{n}_mod": BROKEN_HOOKS.format(hook=h, args=a, body=b)
                      for n, (h, a, b) in plugins.items()})
    env = {"PYTHONPATH": str(path)}
    done = halo("plugins", "--json", env=env)
    assert done.returncode == 0, done.stderr
    errors = {i["name"]: i["error"] for i in json.loads(done.stdout)["plugins"]}
    assert {n: errors[n] for n in plugins} == {
        "bad_backends": "register_backends failed: no GPU here",
        "bad_sources": "register_model_sources failed: division by zero",
        "bad_tuners": "register_tuners failed: 'grub'",
        "bad_suites": "register_eval_suites failed: registered 'a suite', which is not a EvalSuite",
        "bad_commands": "register_commands failed: no config",
        "greedy_commands": "register_commands failed: command 'bench' is taken",
    }
    assert errors["native"] is None
    assert "Traceback" not in done.stderr
    assert "halo: warning: plugin 'bad_commands': register_commands failed: no config" in done.stderr

    done = halo("backends", "--json", env=env)
    assert done.returncode == 0 and "native" in {r["name"] for r in json.loads(done.stdout)}
    done = halo("bench", "--help", env=env)
    assert done.returncode == 0 and "Benchmark llama.cpp" in done.stdout


def test_allow_and_deny_lists(fake_dist, halo):
    path = fake_dist("halo-thirdparty", {"extra": "halo_extra_mod"}, {"halo_extra_mod": GOOD})
    done = halo("plugins", "--json", env={"PYTHONPATH": str(path), "HALO_LOAD_PLUGINS": "extra,pypi"})
    assert sorted(i["name"] for i in json.loads(done.stdout)["plugins"]) == ["extra", "pypi"]
    done = halo("plugins", "--json", env={"PYTHONPATH": str(path), "HALO_DISABLE_PLUGINS": "extra"})
    names = {i["name"] for i in json.loads(done.stdout)["plugins"]}
    assert "extra" not in names and "native" in names


def test_plugins_table(halo):
    done = halo("plugins")
    assert done.returncode == 0
    assert "native" in done.stdout and "backends: native" in done.stdout
    assert "model_sources: pypi" in done.stdout


def test_hooks_run_through_pluggy_wrappers_and_monitoring_included():
    """A wrapper=True hookimpl wraps each plugin's registration, and pluggy's hook monitoring
    sees every call: the host dispatches through pluggy, one plugin at a time."""
    wrapped = []

    @hookimpl(wrapper=True)
    def register_backends(register):
        result = yield
        wrapped.append("called")
        return result

    host = PluginHost()
    calls = []
    host.pm.add_hookcall_monitoring(lambda name, impls, kwargs: calls.append((name, [i.plugin_name for i in impls])),
                                    lambda outcome, name, impls, kwargs: None)
    host.register(_backend_plugin("alpha"), "one")
    host.register(_backend_plugin("beta"), "two")
    host.register(types.SimpleNamespace(register_backends=register_backends), "watcher")
    assert sorted(host.backends()) == ["alpha", "beta"]
    assert wrapped == ["called", "called"]  # once around each plugin's call
    backend_calls = [impls for name, impls in calls if name == "register_backends"]
    assert backend_calls == [["one", "watcher"], ["two", "watcher"]]
    assert {i.name: i.error for i in host.info()} == {"one": None, "two": None, "watcher": None}


def test_a_failing_host_facts_or_shorthand_hook_is_its_plugins_error(capsys):
    @hookimpl
    def host_facts(root):
        raise OSError(f"cannot read {root}/etc")

    @hookimpl
    def option_shorthands():
        return {"llama-cpp-dir": "somewhere_else"}

    good = types.SimpleNamespace(host_facts=hookimpl(lambda root: {"seen": str(root)}),
                                 option_shorthands=hookimpl(lambda: {"llama-cpp-dir": "llama_cpp_dir"}))
    host = PluginHost()
    host.register(good, "good")
    host.register(types.SimpleNamespace(host_facts=host_facts, option_shorthands=option_shorthands), "bad")
    assert host.host_facts("/tmp") == {"good": {"seen": "/tmp"}}
    assert host.option_shorthands() == {"llama-cpp-dir": "llama_cpp_dir"}
    errors = {i.name: i.error for i in host.info()}
    assert errors["good"] is None
    assert errors["bad"] == "option_shorthands failed: --llama-cpp-dir is taken by 'good'"
    assert "plugin 'bad': host_facts failed: cannot read /tmp/etc" in capsys.readouterr().err


def test_blocking_goes_through_pluggy(fake_dist, monkeypatch):
    path = fake_dist("halo-thirdparty", {"extra": "halo_extra_mod"}, {"halo_extra_mod": GOOD})
    monkeypatch.syspath_prepend(str(path))
    monkeypatch.setenv("HALO_DISABLE_PLUGINS", "extra")
    host = PluginHost.from_entry_points()
    assert host.pm.is_blocked("extra") and "extra" not in host.backends()
    monkeypatch.delenv("HALO_DISABLE_PLUGINS")
    monkeypatch.setenv("HALO_LOAD_PLUGINS", "extra")
    host = PluginHost.from_entry_points()
    assert host.pm.is_blocked("native") and list(host.backends()) == ["extra"]
    (info,) = host.info()
    assert (info.name, info.distribution, info.version, info.source) == ("extra", "halo-thirdparty", "1.2.3", "entry-point")
