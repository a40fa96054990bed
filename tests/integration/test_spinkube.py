"""The SpinKube manifests (infra/spinkube/berth.yaml) against spin.toml:
the SpinApp deploys every component, every scheduled job has a CronJob
calling its tick endpoint on its schedule (Kubernetes' 5 fields; jobs that
run more than once a minute run every minute), and every secret they name
is in the Secret. Parsed, not applied: no cluster here."""
import re
import tomllib

import yaml

from conftest import ROOT

SPIN = tomllib.loads((ROOT / "spin.toml").read_text())
DOCS = list(yaml.safe_load_all((ROOT / "infra" / "spinkube" / "berth.yaml").read_text()))


def of_kind(kind):
    return [d for d in DOCS if d and d["kind"] == kind]


def default_of(template):
    """A spin.toml `{{ variable }}` template's default value."""
    m = re.fullmatch(r"\{\{\s*(\w+)\s*\}\}", template)
    return SPIN["variables"][m.group(1)]["default"] if m else template


def kubernetes_schedule(six_fields):
    """A 6-field cron (seconds first, as spin.toml's) as Kubernetes' 5 fields."""
    sec, minute, *rest = six_fields.split()
    if not sec.isdigit():
        # Several times a minute: every minute is as often as Kubernetes goes.
        assert minute == "*", six_fields
    return " ".join([minute, *rest])


def test_the_spinapp_deploys_every_component_of_spin_toml():
    [app] = of_kind("SpinApp")
    assert app["apiVersion"] == "core.spinkube.dev/v1alpha1"
    assert app["spec"]["executor"] == "containerd-shim-spin"
    assert set(app["spec"]["components"]) == set(SPIN["component"])
    assert app["spec"]["replicas"] >= 2, "one registry on several replicas"


def test_every_scheduled_job_has_a_cronjob_calling_its_tick_on_its_schedule():
    jobs = {}
    for cj in of_kind("CronJob"):
        [container] = cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
        m = re.search(r"/berth/jobs/(\w+)/tick", " ".join(container["args"]))
        assert m, cj["metadata"]["name"]
        assert cj["spec"]["concurrencyPolicy"] == "Forbid"
        jobs[m.group(1)] = cj["spec"]["schedule"]
    crons = {t["component"]: default_of(t["cron_expression"]) for t in SPIN["trigger"]["cron"]}
    assert set(jobs) == set(crons)
    for job, six in crons.items():
        assert jobs[job] == kubernetes_schedule(six), (job, six, jobs[job])
        # The tick endpoint is routed to the job's component.
        routes = {t["route"]: t["component"] for t in SPIN["trigger"]["http"]}
        assert routes[f"/berth/jobs/{job}/..."] == job


def test_every_secret_named_is_in_the_secret():
    [secret] = of_kind("Secret")
    keys = set(secret["stringData"])
    [app] = of_kind("SpinApp")
    assert app["spec"]["runtimeConfig"]["loadFromSecret"] == secret["metadata"]["name"]
    assert "runtime-config.toml" in keys
    tomllib.loads(secret["stringData"]["runtime-config.toml"])
    # The Spin build's own runtime config, as `spin up` takes it.
    assert secret["stringData"]["runtime-config.toml"] == (ROOT / "infra/spin/runtime-config.toml").read_text()
    named = []

    def walk(node):
        if isinstance(node, dict):
            if "secretKeyRef" in node:
                named.append((node["secretKeyRef"]["name"], node["secretKeyRef"]["key"]))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
    walk(DOCS)
    assert named, "the manifests name their secrets"
    for name, key in named:
        assert name == secret["metadata"]["name"] and key in keys, (name, key)


def test_the_spinapp_gives_every_variable_the_spin_build_requires():
    build = tomllib.loads((ROOT / "infra" / "spin" / "spin.toml").read_text())
    [app] = of_kind("SpinApp")
    given = {v["name"] for v in app["spec"]["variables"]}
    required = {name for name, v in build["variables"].items() if v.get("required")}
    assert required <= given, required - given
    # Nothing Spin would refuse as undeclared.
    assert given <= set(build["variables"]), given - set(build["variables"])


def test_a_schedule_with_seconds_becomes_kubernetes_five_fields():
    assert kubernetes_schedule("0 0 * * * *") == "0 * * * *"
    assert kubernetes_schedule("*/30 * * * * *") == "* * * * *"
    assert kubernetes_schedule("15 30 2 * * 1") == "30 2 * * 1"
