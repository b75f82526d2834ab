"""Offline checks of the rendered Kubernetes manifests and the Envoy config.

Usage: validate_manifests.py [--binary MOBILESAM] [--envoy envoy.yaml] RENDERED.yaml...

1. Schema: every built-in object validates (strict: unknown fields are errors) against the
   Kubernetes JSON schemas bundled by the PyPI package kubernetes-validate, for each
   version in KUBE_VERSIONS; the custom resources (ServiceMonitor, Istio DestinationRule)
   against the subset schemas in tests/deploy/schemas/.
2. Consistency: the wiring that a schema cannot see (selectors match pod labels, named
   ports exist, probes use grpc.health.v1 on the gRPC port, the grace period covers the
   server's drain, the HPA's custom metric is the server's gauge, MOBILESAM_* variables
   are flags `mobilesam serve` knows).
3. Envoy: envoy.yaml parses into Envoy's v3 Bootstrap proto (xds-protos) and hashes on
   x-session-id.
Exits 1 on the first file with errors, after printing them all.
"""

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

KUBE_VERSIONS = ["1.30.0", "1.37.0"]  # oldest with the preStop sleep action; newest bundled
SCHEMAS = Path(__file__).resolve().parent / "schemas"
CUSTOM = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "servicemonitor.monitoring.coreos.com.v1.json",
    ("networking.istio.io/v1", "DestinationRule"): "destinationrule.networking.istio.io.v1.json",
}
GRPC_PORT, METRICS_PORT = 50051, 9090


def duration_s(text):
    match = re.fullmatch(r"(\d+)(ms|s|m|h)", text)
    assert match, f"unreadable duration {text!r}"
    value, unit = int(match[1]), match[2]
    return value * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]


class Checker:
    def __init__(self, binary):
        self.errors = []
        self.serve_env = None
        if binary and Path(binary).is_file():
            out = subprocess.run([binary, "serve", "--help"], capture_output=True, text=True, timeout=60)
            self.serve_env = set(re.findall(r"env: (MOBILESAM_[A-Z_]+)", out.stdout))
            self.serve_env.add("MOBILESAM_CACHE_DIR")  # read by the checkpoint cache, not a flag

    def error(self, where, message):
        self.errors.append(f"{where}: {message}")

    # ---------------------------------------------------------------- schemas

    def schema(self, where, doc):
        key = (doc.get("apiVersion"), doc.get("kind"))
        if key in CUSTOM:
            schema = json.loads((SCHEMAS / CUSTOM[key]).read_text())
            for e in jsonschema.Draft7Validator(schema).iter_errors(doc):
                self.error(where, f"{'/'.join(map(str, e.absolute_path))}: {e.message}")
            return
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                self.error(where, f"k8s {version}: {'/'.join(map(str, e.path))}: {e.message}")
            except kubernetes_validate.SchemaNotFoundError:
                self.error(where, f"k8s {version}: no schema for {key}")

    # ---------------------------------------------------------------- wiring

    def wiring(self, name, docs):
        by_kind = {}
        for d in docs:
            by_kind.setdefault(d["kind"], []).append(d)

        def labels_match(selector, labels):
            return all(labels.get(k) == v for k, v in selector.items())

        for dep in by_kind.get("Deployment", []):
            where = f"{name}: Deployment/{dep['metadata']['name']}"
            pod = dep["spec"]["template"]
            pod_labels = pod["metadata"]["labels"]
            if not labels_match(dep["spec"]["selector"]["matchLabels"], pod_labels):
                self.error(where, "selector does not match the pod labels")
            spec = pod["spec"]
            for c in spec["containers"]:
                if c["name"] != "mobilesam":
                    continue
                self.server_container(where, spec, c)

        pods = [d["spec"]["template"] for kind in ("Deployment", "Job", "StatefulSet") for d in by_kind.get(kind, [])]
        for svc in by_kind.get("Service", []):
            where = f"{name}: Service/{svc['metadata']['name']}"
            matched = [p for p in pods if labels_match(svc["spec"]["selector"], p["metadata"]["labels"])]
            if not matched:
                self.error(where, "selects no pod template")
            for port in svc["spec"]["ports"]:
                names = {cp.get("name") for p in matched for c in p["spec"]["containers"] for cp in c.get("ports", [])}
                if isinstance(port["targetPort"], str) and port["targetPort"] not in names:
                    self.error(where, f"targetPort {port['targetPort']} is no container port")
                if port["name"] == "grpc" and port.get("appProtocol") != "grpc":
                    self.error(where, "the grpc port needs appProtocol: grpc")
        for pdb in by_kind.get("PodDisruptionBudget", []):
            if not any(labels_match(pdb["spec"]["selector"]["matchLabels"], p["metadata"]["labels"]) for p in pods):
                self.error(f"{name}: PodDisruptionBudget", "selects no pod template")
        for np_ in by_kind.get("NetworkPolicy", []):
            where = f"{name}: NetworkPolicy/{np_['metadata']['name']}"
            matched = [p for p in pods if labels_match(np_["spec"]["podSelector"]["matchLabels"], p["metadata"]["labels"])]
            if not matched:
                self.error(where, "selects no pod template")
            names = {cp.get("name") for p in matched for c in p["spec"]["containers"] for cp in c.get("ports", [])}
            for rule in np_["spec"].get("ingress", []):
                for port in rule.get("ports", []):
                    if isinstance(port["port"], str) and port["port"] not in names:
                        self.error(where, f"ingress port {port['port']} is no container port")
        for sm in by_kind.get("ServiceMonitor", []):
            where = f"{name}: ServiceMonitor"
            services = [s for s in by_kind.get("Service", [])
                        if labels_match(sm["spec"]["selector"]["matchLabels"], s["metadata"].get("labels", {}))]
            if len(services) != 1:
                self.error(where, f"selects {len(services)} Services, want exactly the one with the metrics port")
            for ep in sm["spec"]["endpoints"]:
                if not all(any(p["name"] == ep["port"] for p in s["spec"]["ports"]) for s in services):
                    self.error(where, f"port {ep['port']} is not on the selected Service")
        for hpa in by_kind.get("HorizontalPodAutoscaler", []):
            where = f"{name}: HorizontalPodAutoscaler"
            ref = hpa["spec"]["scaleTargetRef"]
            if not any(d["metadata"]["name"] == ref["name"] for d in by_kind.get(ref["kind"], [])):
                self.error(where, f"scale target {ref['kind']}/{ref['name']} is not in the manifests")
            kinds = {m["type"] for m in hpa["spec"]["metrics"]}
            if kinds != {"Resource", "Pods"}:
                self.error(where, f"metrics {kinds}: want CPU (Resource) and queue depth (Pods)")
            for m in hpa["spec"]["metrics"]:
                if m["type"] == "Pods" and m["pods"]["metric"]["name"] != "mobilesam_queue_depth":
                    self.error(where, "the custom metric must be the server's mobilesam_queue_depth gauge")

    def server_container(self, where, spec, c):
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        if self.serve_env is not None:
            for key in env:
                if key.startswith("MOBILESAM_") and key not in self.serve_env:
                    self.error(where, f"{key} is not an environment variable of `mobilesam serve`")
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        if ports != {"grpc": GRPC_PORT, "metrics": METRICS_PORT}:
            self.error(where, f"container ports {ports}")
        if env.get("MOBILESAM_ADDR", "").rsplit(":", 1)[-1] != str(GRPC_PORT):
            self.error(where, "MOBILESAM_ADDR does not listen on the grpc port")
        if env.get("MOBILESAM_METRICS_ADDR", "").rsplit(":", 1)[-1] != str(METRICS_PORT):
            self.error(where, "MOBILESAM_METRICS_ADDR does not listen on the metrics port")
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            if c.get(probe, {}).get("grpc", {}).get("port") != GRPC_PORT:
                self.error(where, f"{probe} must be the gRPC health probe on port {GRPC_PORT}")
        drain = duration_s(env.get("MOBILESAM_SHUTDOWN_TIMEOUT", "30s"))
        pre_stop = c.get("lifecycle", {}).get("preStop", {}).get("sleep", {}).get("seconds", 0)
        grace = spec.get("terminationGracePeriodSeconds", 30)
        if grace < pre_stop + drain + 5:
            self.error(where, f"terminationGracePeriodSeconds {grace} < preStop {pre_stop}s + drain {drain}s + 5s")
        sc = c.get("securityContext", {})
        want = {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False, "runAsNonRoot": True}
        for key, value in want.items():
            if sc.get(key) != value:
                self.error(where, f"securityContext.{key} must be {value}")
        if sc.get("capabilities", {}).get("drop") != ["ALL"]:
            self.error(where, "securityContext.capabilities.drop must be [ALL]")
        mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
        volumes = {v["name"] for v in spec.get("volumes", [])}
        for path, vol in mounts.items():
            if vol not in volumes:
                self.error(where, f"volume {vol} mounted at {path} is not defined")
        checkpoint = env.get("MOBILESAM_CHECKPOINT")
        cache = env.get("MOBILESAM_CACHE_DIR")
        if checkpoint:
            if not any(checkpoint.startswith(p.rstrip("/") + "/") for p in mounts):
                self.error(where, f"MOBILESAM_CHECKPOINT {checkpoint} is on no mounted volume")
        elif cache not in mounts:
            self.error(where, "without MOBILESAM_CHECKPOINT the cache dir must be a writable volume")

    # ---------------------------------------------------------------- envoy

    def envoy(self, path):
        from google.protobuf import json_format
        from envoy.config.bootstrap.v3 import bootstrap_pb2
        # Register the typed_config types the file names.
        from envoy.extensions.filters.http.router.v3 import router_pb2  # noqa: F401
        from envoy.extensions.filters.network.http_connection_manager.v3 import http_connection_manager_pb2  # noqa: F401
        from envoy.extensions.upstreams.http.v3 import http_protocol_options_pb2  # noqa: F401

        config = yaml.safe_load(Path(path).read_text())
        try:
            json_format.ParseDict(config, bootstrap_pb2.Bootstrap())
        except json_format.ParseError as e:
            self.error(str(path), f"not a valid Envoy v3 Bootstrap: {e}")
            return
        cluster = config["static_resources"]["clusters"][0]
        if cluster["lb_policy"] not in ("RING_HASH", "MAGLEV"):
            self.error(str(path), "the cluster must use a consistent-hash lb_policy")
        routes = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
        hashes = [h["header"]["header_name"]
                  for vh in routes["route_config"]["virtual_hosts"] for r in vh["routes"]
                  for h in r["route"].get("hash_policy", [])]
        if hashes != ["x-session-id"]:
            self.error(str(path), f"routes hash on {hashes}, want x-session-id")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--binary")
    parser.add_argument("--envoy")
    parser.add_argument("files", nargs="+")
    args = parser.parse_args()
    checker = Checker(args.binary)
    if checker.serve_env is None:
        print("note: no server binary, MOBILESAM_* variables not checked against `serve --help`")
    total = 0
    for f in args.files:
        docs = [d for d in yaml.safe_load_all(Path(f).read_text()) if d]
        name = Path(f).name
        for d in docs:
            checker.schema(f"{name}: {d.get('kind')}/{d.get('metadata', {}).get('name')}", d)
        checker.wiring(name, docs)
        total += len(docs)
        print(f"{name}: {len(docs)} objects: {', '.join(sorted({d['kind'] for d in docs}))}")
    if args.envoy:
        checker.envoy(args.envoy)
        print(f"{Path(args.envoy).name}: Envoy v3 Bootstrap")
    for e in checker.errors:
        print("ERROR", e)
    if checker.errors:
        sys.exit(1)
    print(f"ok: {total} objects valid against Kubernetes {', '.join(KUBE_VERSIONS)} (strict) and consistent")


if __name__ == "__main__":
    main()
