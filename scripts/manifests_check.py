"""The checks of `scripts/manifests.sh check` (which installs what this needs and runs it):
deploy/k8s against the Kubernetes schemas and the code's settings, docker-compose.yml's
services. See the comment at the top of scripts/manifests.sh for what is checked."""

import glob
import os
import re
import sys
import tomllib

import yaml
from kubernetes_validate import utils as kv

K8S = "deploy/k8s"
COMPOSE = "docker-compose.yml"
VERSIONS = os.environ["CDP_K8S_VERSIONS"].split()
# The stages issue 20 wants deployable on their own, each its own service / workload.
STAGES = ["control", "edge", "validate", "lake", "profile", "sinks"]
# Where each stage answers its orchestrator: control and the edge on their own listener (control
# has no /readyz), the consumer stages on health.listen (crates/stage/src/health.rs).
HEALTH_LISTEN = {"control": "control.listen", "edge": "edge.listen"}
HEALTH_DEFAULT = "health.listen"
HEALTH_DEFAULT_ADDR = "127.0.0.1:9464"
# Settings a stage's process cannot start or work without, beyond kafka.bootstrap_servers
# (crates/cdp/src/runtime.rs `start`, crates/cdp/src/exposure.rs `check`):
NEEDS = {
    # control.listen off loopback: refused without all three (exposure.rs).
    "control": ["control.listen", "control.admin_token", "auth.token_secret",
                "control.secret_key", "lake.root"],
    # edge.listen off loopback: refused without the token secret (exposure.rs).
    "edge": ["edge.listen", "auth.token_secret"],
    "validate": ["health.listen"],
    # The registry's credential is control.admin_token (runtime.rs, lake.registry_token).
    "lake": ["health.listen", "lake.root", "lake.registry_url", "control.admin_token"],
    # profile.query_listen off loopback: refused without the admin token (exposure.rs); the
    # query URL control reaches, a stable instance id, the state on a volume.
    "profile": ["health.listen", "profile.query_listen", "profile.query_url",
                "profile.instance_id", "profile.state_dir", "profile.registry_url",
                "control.admin_token"],
    # Opens what control sealed with the same key (runtime.rs, sinks).
    "sinks": ["health.listen", "control.secret_key"],
}

failures = []


def fail(what):
    failures.append(what)
    print(f"FAIL {what}")


def ok(what, since=None):
    """Reports `what` as passed, unless a failure was recorded after `since` (a len(failures))."""
    if since is None or len(failures) == since:
        print(f"ok   {what}")


# ---- the settings the code has, from the structs behind crates/cdp/src/config.rs ----------------

def rust_structs():
    structs = {}
    files = [f for f in glob.glob("crates/*/src/**/*.rs", recursive=True)
             if not f.startswith("crates/bench/")]
    for path in files:
        text = open(path, encoding="utf-8").read()
        for m in re.finditer(r"^pub struct (\w+) \{\n(.*?)^\}", text, re.M | re.S):
            fields = {}
            for f in re.finditer(r"^    pub (?:r#)?(\w+): (.+),$", m.group(2), re.M):
                fields[f.group(1)] = f.group(2).strip()
            structs.setdefault(m.group(1), {}).update(fields)
    return structs


STRUCTS = rust_structs()
if "CdpConfig" not in STRUCTS:
    fail("crates/cdp/src/config.rs: no `pub struct CdpConfig` to read the settings from")


def setting(path):
    """None when `path` (a list of keys) is a setting of CdpConfig, else why not."""
    ty = "CdpConfig"
    for i, key in enumerate(path):
        inner = re.sub(r"^Option<(.*)>$", r"\1", ty)
        if re.match(r"^(std::collections::)?(BTreeMap|HashMap)<", inner):
            return None  # a free-form table (kafka.properties, lake.s3.options)
        name = inner.split("::")[-1]
        if name not in STRUCTS:
            return f"{'.'.join(path[:i])} is a value ({ty}), not a section"
        if key not in STRUCTS[name]:
            return f"{name} has no field {key!r}"
        ty = STRUCTS[name][key]
    name = re.sub(r"^Option<(.*)>$", r"\1", ty).split("::")[-1]
    if name in STRUCTS:
        return f"{'.'.join(path)} is a section ({name}), not a value"
    return None


def env_setting(name):
    """The setting a CDP_SECTION__KEY variable sets (crates/contract/src/config.rs), or None."""
    if not name.startswith("CDP_") or "__" not in name:
        return None
    return name[len("CDP_"):].lower().split("__")


def toml_keys(table, prefix=()):
    for key, value in table.items():
        path = prefix + (key,)
        if isinstance(value, dict) and setting(list(path)) is not None:
            yield from toml_keys(value, path)
        else:
            yield list(path)


def real_stages():
    """The subcommands of `cdp` that run stages (crates/cdp/src/main.rs)."""
    text = open("crates/cdp/src/main.rs", encoding="utf-8").read()
    found = re.findall(r"Command::(\w+)(?:\s*\{[^}]*\})?\s*=>\s*commands::run::stage\(", text)
    return {n.lower() for n in found}


REAL = real_stages()
missing = [s for s in STAGES if s not in REAL]
if missing:
    fail(f"crates/cdp/src/main.rs: no stage subcommand {', '.join(missing)}")
else:
    ok(f"crates/cdp/src/main.rs: stage subcommands {', '.join(sorted(REAL))}")


def stage_of(args):
    """The `cdp` subcommand in an argument list (after --config FILE), or None."""
    args = [str(a) for a in (args or [])]
    i = 0
    while i < len(args):
        if args[i] == "--config":
            i += 2
        elif args[i].startswith("-"):
            i += 1
        else:
            return args[i]
    return None


def port_of(addr):
    return addr.rsplit(":", 1)[-1] if ":" in addr else None


# ---- deploy/k8s -----------------------------------------------------------------------------------

def check_k8s():
    kustomization = os.path.join(K8S, "kustomization.yaml")
    try:
        kust = yaml.safe_load(open(kustomization, encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        fail(f"{kustomization}: {e}")
        return
    listed = kust.get("resources") or []
    if kust.get("kind") != "Kustomization" or not listed:
        fail(f"{kustomization}: not a Kustomization with resources")
        return
    on_disk = sorted(os.path.relpath(p, K8S) for p in glob.glob(f"{K8S}/*.y*ml"))
    unlisted = [p for p in on_disk if p != "kustomization.yaml" and p not in listed]
    if unlisted:
        fail(f"{kustomization}: does not list {', '.join(unlisted)}")
    ok(f"{kustomization}: {len(listed)} files, namespace {kust.get('namespace')}")

    resources = []  # (file, document)
    for name in listed:
        path = os.path.join(K8S, name)
        try:
            docs = [d for d in yaml.safe_load_all(open(path, encoding="utf-8")) if d is not None]
        except (OSError, yaml.YAMLError) as e:
            fail(f"{path}: {e}")
            continue
        for doc in docs:
            what = f"{path}: {doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"
            bad = False
            for version in VERSIONS:
                try:
                    kv.validate(doc, version, strict=True)
                except kv.ValidationError as e:
                    at = ".".join(str(p) for p in e.absolute_path) or "(top)"
                    fail(f"{what}: Kubernetes {version}: at {at}: {e.message}")
                    bad = True
                except (kv.SchemaNotFoundError, kv.VersionNotSupportedError) as e:
                    fail(f"{what}: {e.message}")
                    bad = True
                except Exception as e:  # a document the validator cannot even read
                    fail(f"{what}: Kubernetes {version}: {e!r}")
                    bad = True
            if not bad:
                ok(f"{what}: valid for Kubernetes {', '.join(VERSIONS)} (strict schema)")
            resources.append((path, doc))

    by_kind = {}
    for path, doc in resources:
        by_kind.setdefault(doc.get("kind"), {})[doc["metadata"]["name"]] = (path, doc)
    secrets = {n: set((d.get("stringData") or {}) | (d.get("data") or {}))
               for n, (_, d) in by_kind.get("Secret", {}).items()}
    configmaps = by_kind.get("ConfigMap", {})

    for name, (path, doc) in configmaps.items():
        text = (doc.get("data") or {}).get("cdp.toml")
        if text is None:
            continue
        try:
            table = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            fail(f"{path}: ConfigMap/{name} cdp.toml: {e}")
            continue
        keys, before = list(toml_keys(table)), len(failures)
        for key in keys:
            why = setting(key)
            if why:
                fail(f"{path}: ConfigMap/{name} cdp.toml: {'.'.join(key)}: {why}")
        ok(f"{path}: ConfigMap/{name} cdp.toml: {len(keys)} keys, each a setting of the code", before)

    stages_seen = {}
    for kind in ("Deployment", "StatefulSet"):
        for name, (path, doc) in by_kind.get(kind, {}).items():
            spec = doc.get("spec") or {}
            pod = (spec.get("template") or {}).get("spec") or {}
            what = f"{path}: {kind}/{name}"
            if kind == "StatefulSet":
                svc = by_kind.get("Service", {}).get(spec.get("serviceName"))
                if not svc or svc[1]["spec"].get("clusterIP") != "None":
                    fail(f"{what}: serviceName {spec.get('serviceName')!r} is no headless Service")
            volumes = {v["name"]: v for v in pod.get("volumes") or []}
            volumes.update({t["metadata"]["name"]: t for t in spec.get("volumeClaimTemplates") or []})
            for v in volumes.values():
                cm = (v.get("configMap") or {}).get("name")
                if cm and cm not in configmaps:
                    fail(f"{what}: volume {v['name']}: no ConfigMap {cm}")
            for c in pod.get("containers") or []:
                cwhat, before = f"{what} container {c.get('name')}", len(failures)
                stage = stage_of(c.get("args") or c.get("command"))
                if stage not in REAL:
                    fail(f"{cwhat}: runs {stage!r}, not a cdp stage ({', '.join(sorted(REAL))})")
                    continue
                stages_seen[stage] = what
                ports = {p.get("name") for p in c.get("ports") or []} | {
                    p.get("containerPort") for p in c.get("ports") or []}
                for probe, path_ in (("readinessProbe", None), ("livenessProbe", "/healthz")):
                    get = (c.get(probe) or {}).get("httpGet")
                    if not get:
                        fail(f"{cwhat}: no {probe} (httpGet)")
                        continue
                    if get.get("port") not in ports:
                        fail(f"{cwhat}: {probe} asks port {get.get('port')!r}, not a port of the container")
                    want = path_ or ("/healthz" if stage == "control" else "/readyz")
                    if get.get("path") != want:
                        fail(f"{cwhat}: {probe} asks {get.get('path')}, not {want}")
                res = c.get("resources") or {}
                if not res.get("requests") or not res.get("limits"):
                    fail(f"{cwhat}: resources need requests and limits")
                for m in c.get("volumeMounts") or []:
                    if m["name"] not in volumes:
                        fail(f"{cwhat}: mounts {m['name']}, no such volume")
                for ref in c.get("envFrom") or []:
                    s = ref.get("secretRef") or {}
                    if s and not s.get("optional") and s.get("name") not in secrets:
                        fail(f"{cwhat}: envFrom Secret {s.get('name')}, not in the manifests")
                for e in c.get("env") or []:
                    key = env_setting(e["name"])
                    if key and setting(key):
                        fail(f"{cwhat}: {e['name']}: {setting(key)}")
                    s = ((e.get("valueFrom") or {}).get("secretKeyRef")) or {}
                    if s and not s.get("optional") and s.get("key") not in secrets.get(s.get("name"), ()):
                        fail(f"{cwhat}: {e['name']}: no key {s.get('key')} in Secret {s.get('name')}")
                ok(f"{cwhat}: `cdp {stage}`, probes, resources, references", before)
    for stage in STAGES:
        if stage not in stages_seen:
            fail(f"{K8S}: no Deployment or StatefulSet runs `cdp {stage}`")


# ---- docker-compose.yml ---------------------------------------------------------------------------

def check_compose():
    try:
        compose = yaml.safe_load(open(COMPOSE, encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        fail(f"{COMPOSE}: {e}")
        return
    services = compose.get("services") or {}
    volumes = set(compose.get("volumes") or {})
    ok(f"{COMPOSE}: services {', '.join(services)}")

    by_stage = {}
    for name, svc in services.items():
        what, before = f"{COMPOSE}: service {name}", len(failures)
        svc = svc or {}
        cdp = "build" in svc
        env = svc.get("environment") or {}
        if isinstance(env, list):
            env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
        env = {k: ("" if v is None else str(v)) for k, v in env.items()}
        if cdp:
            build = svc["build"] if isinstance(svc["build"], dict) else {"context": svc["build"]}
            if build.get("dockerfile") != "deploy/Dockerfile":
                fail(f"{what}: not built from deploy/Dockerfile")
            command = svc.get("command")
            command = command.split() if isinstance(command, str) else command
            stage = stage_of(command)
            if stage not in REAL:
                fail(f"{what}: command {command!r} names no cdp stage ({', '.join(sorted(REAL))})")
                stage = None
            else:
                by_stage.setdefault(stage, name)
        else:
            stage = None

        health = svc.get("healthcheck") or {}
        test = health.get("test")
        if name != "redpanda":
            if not test or health.get("disable") or test == ["NONE"]:
                fail(f"{what}: no healthcheck")
            elif stage:
                text = " ".join(test) if isinstance(test, list) else str(test)
                url = re.search(r"https?://[^/\s]+:(\d+)(/\S*)", text)
                listen_key = HEALTH_LISTEN.get(stage, HEALTH_DEFAULT)
                listen = env.get("CDP_" + listen_key.upper().replace(".", "__"),
                                 HEALTH_DEFAULT_ADDR if listen_key == HEALTH_DEFAULT else "")
                want_path = "/healthz" if stage == "control" else "/readyz"
                if not url:
                    fail(f"{what}: healthcheck asks no URL: {text}")
                elif url.group(1) != port_of(listen) or url.group(2) != want_path:
                    fail(f"{what}: healthcheck asks :{url.group(1)}{url.group(2)}, the stage "
                         f"answers {want_path} on {listen_key} = {listen}")

        deps = svc.get("depends_on") or {}
        deps = {d: {} for d in deps} if isinstance(deps, list) else deps
        for dep, how in deps.items():
            condition = (how or {}).get("condition", "service_started")
            if dep not in services:
                fail(f"{what}: depends_on {dep}, no such service")
            elif dep == name:
                fail(f"{what}: depends on itself")
            elif condition not in ("service_started", "service_healthy",
                                   "service_completed_successfully"):
                fail(f"{what}: depends_on {dep}: unknown condition {condition}")
            elif condition == "service_healthy" and not (services[dep] or {}).get("healthcheck"):
                fail(f"{what}: waits for {dep} to be healthy, which has no healthcheck")

        mounts = []
        for v in svc.get("volumes") or []:
            source, _, target = str(v).partition(":")
            target = target.split(":")[0]
            mounts.append(target)
            if not source.startswith((".", "/")) and source not in volumes:
                fail(f"{what}: volume {source} is not declared under volumes")
        for key, value in env.items():
            path = env_setting(key)
            if path and setting(path):
                fail(f"{what}: {key}: {setting(path)}")
            for host in re.findall(r"(?:^|//|@)([a-z][a-z0-9_-]*):\d+", value):
                if host not in services and host != "localhost":
                    fail(f"{what}: {key} names {host}, not a service")
            local = re.match(r"^file://(/.*)$", value) if key == "CDP_LAKE__ROOT" else None
            local = local.group(1) if local else (value if key == "CDP_PROFILE__STATE_DIR" else None)
            if local and not any(local == m or local.startswith(m.rstrip("/") + "/") for m in mounts):
                fail(f"{what}: {key} = {value} is on no volume of the service")
        if stage:
            have = {".".join(env_setting(k)) for k in env if env_setting(k)}
            need = ["kafka.bootstrap_servers"] + NEEDS.get(stage, [])
            lacking = [k for k in need if k not in have]
            if lacking:
                fail(f"{what}: `cdp {stage}` needs {', '.join(lacking)}")
        if stage:
            ok(f"{what}: `cdp {stage}`, {len(env)} settings, healthcheck, depends_on "
               f"{', '.join(deps) or '-'}", before)
        else:
            ok(f"{what}: image {svc.get('image')}, depends_on {', '.join(deps) or '-'}", before)

    for stage in STAGES:
        if stage not in by_stage:
            fail(f"{COMPOSE}: no service runs `cdp {stage}`")

    # depends_on must not loop.
    def visit(name, trail):
        if name in trail:
            fail(f"{COMPOSE}: depends_on loops: {' -> '.join(trail + [name])}")
            return
        deps = (services.get(name) or {}).get("depends_on") or {}
        for dep in deps:
            if dep in services:
                visit(dep, trail + [name])
    for name in services:
        visit(name, [])


check_k8s()
check_compose()
if failures:
    print(f"manifests: {len(failures)} problem(s)")
    sys.exit(1)
print("manifests: all checks passed")
