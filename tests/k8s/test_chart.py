"""The Helm chart, offline: helm lint --strict, rendering with default and production-like values,
every object against the Kubernetes OpenAPI schemas (kubernetes-validate, strict), a checkov policy
scan with zero failed checks, and the chart's own invariants over the rendered objects."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from petpro.mesh import MESH

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "k8s" / "helm" / "petpro"
KUBE_VERSION = "1.33"  # a current version among kubernetes-validate's bundled schemas
KUBE_VERSIONS = ("1.30", "1.33", "1.37")  # the chart's minimum (Chart.yaml kubeVersion) to the newest bundled
CRD_GROUPS = ("monitoring.coreos.com/", "kafka.strimzi.io/")  # not in the core schemas

_spec = importlib.util.spec_from_file_location("k8s_render", ROOT / "k8s" / "render.py")
assert _spec and _spec.loader
render_mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(render_mod)

# What a production install looks like: chart-created Secret (values from a file kept out of git),
# TLS, a digest, Strimzi topics, ServiceMonitors, a release name that is not the chart's name.
PRODUCTION: dict[str, Any] = {
    "image": {
        "repository": "registry.example.com/petpro",
        "tag": "1.4.2",
        "digest": "sha256:" + "ab" * 32,
        "pullPolicy": "IfNotPresent",
    },
    "publicHost": "api.petpro.example.com",
    "ingress": {"className": "nginx", "tlsSecretName": "petpro-tls"},
    "secrets": {
        "existingSecret": "",
        "create": {
            "databaseUrl": "postgresql://petpro:pw@db.example.com:5432/petpro",
            "redisUrl": "rediss://:pw@redis.example.com:6380/0",
            "smtpUrl": "smtps://mailer:pw@smtp.example.com:465",
            "stripeApiKey": "sk_test_x",
            "stripeWebhookSecret": "whsec_x",
            "authSigningKeyPem": "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n",
        },
    },
    "kafka": {
        "bootstrapServers": "prod-kafka-bootstrap.kafka:9092",
        "topicsVia": "strimzi",
        "strimziCluster": "prod",
        "partitions": 12,
        "replicationFactor": 3,
    },
    "stripe": {"apiBase": "https://api.stripe.com"},
    "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
    "prometheusRule": {"enabled": True, "labels": {"release": "prometheus"}},
    "services": {
        "booking": {"replicas": 4, "settings": {"HOLD_TTL_SECONDS": "900"}},
        "notif": {"replicas": 3},
    },
    "networkPolicy": {"egress": {"postgres": {"cidr": "10.20.0.0/16", "port": 5432}}},
    "notifications": {
        "fcm": {"existingSecret": "petpro-fcm"},
        "apns": {
            "existingSecret": "petpro-apns",
            "keyId": "ABC123DEFG",
            "teamId": "DEF123GHIJ",
            "topic": "dev.petpro.app",
        },
        "sms": {"existingSecret": "petpro-twilio", "from": "+15005550006"},
    },
}
VARIANTS = {"default": {}, "production": PRODUCTION}


def objects(rendered: dict[str, str]) -> list[dict[str, Any]]:
    return [d for text in rendered.values() for d in yaml.safe_load_all(text) if d]


@pytest.fixture(scope="module", params=list(VARIANTS))
def variant(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]], dict[str, str]]:
    release = "petpro" if request.param == "default" else "shop"
    rendered = render_mod.render(copy.deepcopy(VARIANTS[request.param]), release=release, namespace="pets")
    return request.param, objects(rendered), rendered


def by_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


def containers(objs: list[dict[str, Any]]) -> Iterator[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]:
    """(workload, pod spec, container) for every Deployment and Job."""
    for o in objs:
        if o["kind"] in ("Deployment", "Job"):
            pod = o["spec"]["template"]["spec"]
            for c in [*pod.get("initContainers", []), *pod["containers"]]:
                yield o, pod, c


# --------------------------------------------------------------------------------------------------
# lint, schemas, policy scan
# --------------------------------------------------------------------------------------------------


def test_helm_lint_strict() -> None:
    import helm_python as helm

    for values in VARIANTS.values():
        result = helm.lint(str(CHART), copy.deepcopy(values), strict=True, kube_version=f"v{KUBE_VERSION}.0")
        assert result["errors"] == []
        assert [m for m in result["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("kube_version", KUBE_VERSIONS)
def test_every_object_matches_the_kubernetes_schemas(variant, kube_version: str) -> None:
    import kubernetes_validate

    name, objs, _ = variant
    checked = 0
    for o in objs:
        if o["apiVersion"].startswith(CRD_GROUPS):
            continue
        kubernetes_validate.validate(o, kube_version, strict=True)
        checked += 1
    assert checked >= 40, f"{name}: only {checked} objects validated"


def test_schema_validation_catches_a_wrong_field() -> None:
    import kubernetes_validate

    dep = copy.deepcopy(by_kind(objects(render_mod.render()), "Deployment")[0])
    dep["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["grpcc"] = {"port": 1}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(dep, KUBE_VERSION, strict=True)


def checkov_binary() -> Path:
    exe = ROOT / ".venv" / "tools" / "checkov" / "bin" / "checkov"
    if not exe.exists():
        pytest.fail("checkov is missing: `make setup` installs it into .venv/tools/checkov")
    return exe


def test_checkov_finds_no_failed_check(variant, tmp_path: Path) -> None:
    _, objs, rendered = variant
    for key, text in rendered.items():
        (tmp_path / Path(key).name).write_text(text)
    env = {
        **os.environ,
        "BC_SKIP_MAPPING": "TRUE",
        "BC_SKIP_DOWNLOAD": "TRUE",
        "CHECKOV_RUN_SCA_PACKAGE_SCAN_V2": "FALSE",
    }
    result = subprocess.run(
        [
            str(checkov_binary()),
            "-d",
            str(tmp_path),
            "--framework",
            "kubernetes",
            "--output",
            "json",
            "--quiet",
            "--skip-download",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    report = json.loads(result.stdout)
    summary = report["summary"]
    failed = [
        f"{c['check_id']} {c['resource']}: {c['check_name']}" for c in report["results"]["failed_checks"]
    ]
    assert summary["failed"] == 0, "\n".join(failed)
    assert summary["passed"] > 300
    # every skip is annotated on its resource, with a reason
    for o in objs:
        for key, value in (o["metadata"].get("annotations") or {}).items():
            if key.startswith("checkov.io/skip"):
                check, _, reason = value.partition("=")
                assert re.fullmatch(r"CKV_K8S_\d+", check) and len(reason) > 20, value


# --------------------------------------------------------------------------------------------------
# invariants
# --------------------------------------------------------------------------------------------------


def test_every_container_has_probes_resources_and_the_hardened_security_context(variant) -> None:
    name, objs, _ = variant
    seen = 0
    for workload, pod, c in containers(objs):
        where = f"{name}: {workload['metadata']['name']}/{c['name']}"
        seen += 1
        if workload["kind"] == "Deployment":
            assert "readinessProbe" in c and "livenessProbe" in c and "startupProbe" in c, where
        assert set(c["resources"]["requests"]) >= {"cpu", "memory"}, where
        assert set(c["resources"]["limits"]) >= {"cpu", "memory"}, where
        sc = c["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["runAsUser"] > 0, where
        assert sc["readOnlyRootFilesystem"] is True, where
        assert sc["allowPrivilegeEscalation"] is False, where
        assert sc["capabilities"]["drop"] == ["ALL"], where
        assert sc["seccompProfile"]["type"] == "RuntimeDefault", where
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        assert pod["automountServiceAccountToken"] is False, where
        # the only writable path is /tmp
        mounts = {m["mountPath"]: m for m in c.get("volumeMounts", [])}
        assert "/tmp" in mounts, where
        assert all(m.get("readOnly") for p, m in mounts.items() if p != "/tmp"), where
        image = c["image"]
        assert not image.endswith(":latest") and ":" in image.split("/")[-1], where
    assert seen >= 7


def test_grpc_services_use_native_grpc_probes_and_drain_before_sigkill(variant) -> None:
    _, objs, _ = variant
    for dep in by_kind(objs, "Deployment"):
        pod = dep["spec"]["template"]["spec"]
        (c,) = pod["containers"]
        env = {e["name"]: e.get("value") for e in c.get("env", [])}
        grace = float(next((v for k, v in env.items() if k.endswith("_GRACE_SECONDS")), 0))
        pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert pod["terminationGracePeriodSeconds"] >= pre_stop + grace, dep["metadata"]["name"]
        assert dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
        assert pod["topologySpreadConstraints"]
        if c["name"] != "envoy":
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert c[probe]["grpc"]["port"] == c["ports"][0]["containerPort"]


def test_every_deployment_has_a_pdb_and_its_own_service_account(variant) -> None:
    _, objs, _ = variant
    accounts = {o["metadata"]["name"]: o for o in by_kind(objs, "ServiceAccount")}
    pdbs = [p["spec"]["selector"]["matchLabels"] for p in by_kind(objs, "PodDisruptionBudget")]
    hpas = {h["spec"]["scaleTargetRef"]["name"] for h in by_kind(objs, "HorizontalPodAutoscaler")}
    deployments = by_kind(objs, "Deployment")
    assert len(deployments) == 6  # auth, booking, payment, notif, edge, envoy
    for dep in deployments:
        sa = dep["spec"]["template"]["spec"]["serviceAccountName"]
        assert sa in accounts and accounts[sa]["automountServiceAccountToken"] is False
        assert dep["spec"]["selector"]["matchLabels"] in pdbs, dep["metadata"]["name"]
    stateless = {d["metadata"]["name"] for d in deployments if not d["metadata"]["name"].endswith("-notif")}
    assert stateless <= hpas


def test_grpc_services_are_headless_and_addressed_by_dns_round_robin(variant) -> None:
    _, objs, _ = variant
    services = {s["metadata"]["name"]: s for s in by_kind(objs, "Service")}
    fullname = next(n for n in services if n.endswith("-envoy")).removesuffix("-envoy")
    for svc in ("auth", "booking", "payment", "notif", "edge"):
        assert services[f"{fullname}-{svc}"]["spec"]["clusterIP"] == "None"
    targets = {
        e["name"]: e["value"]
        for _, _, c in containers(objs)
        for e in c.get("env", [])
        if e["name"].endswith("_ADDR")
    }
    assert targets["BOOKING_ADDR"] == f"dns:///{fullname}-booking:7402"
    assert set(targets) == {"AUTH_ADDR", "BOOKING_ADDR", "PAYMENT_ADDR", "NOTIF_ADDR"}


def test_migrations_and_topics_run_as_pre_install_and_pre_upgrade_hooks(variant) -> None:
    name, objs, _ = variant
    jobs = {j["metadata"]["name"].rsplit("-", 1)[-1]: j for j in by_kind(objs, "Job")}
    assert "migrate" in jobs
    for job in jobs.values():
        hooks = set(job["metadata"]["annotations"]["helm.sh/hook"].split(","))
        assert hooks == {"pre-install", "pre-upgrade"}
    cmd = jobs["migrate"]["spec"]["template"]["spec"]["containers"][0]["command"]
    assert cmd == ["python", "-m", "petpro.migrations"]
    if name == "default":
        assert "topics" in jobs
    else:
        topics = {t["spec"]["topicName"]: t for t in by_kind(objs, "KafkaTopic")}
        # every topic of the mesh manifest and its dead letters (account.deleted since account deletion)
        assert set(topics) == set(MESH.topic_names())
        assert {"booking.created", "booking.created.dlq", "booking.cancelled", "account.deleted"} <= set(
            topics
        )
        assert all(t["spec"]["partitions"] == 12 for t in topics.values())
    # whatever the hook pods need exists before them (hooks with lower weight), not as release objects
    sa = jobs["migrate"]["spec"]["template"]["spec"]["serviceAccountName"]
    (account,) = [o for o in by_kind(objs, "ServiceAccount") if o["metadata"]["name"] == sa]
    assert int(account["metadata"]["annotations"]["helm.sh/hook-weight"]) < 0


def test_secrets_come_from_a_secret_and_all_auth_replicas_share_one_key_directory(variant) -> None:
    name, objs, _ = variant
    for _, _, c in containers(objs):
        for e in c.get("env", []):
            if re.search(r"DATABASE_URL|REDIS_URL|SMTP_URL|STRIPE_API_KEY|WEBHOOK_SECRET", e["name"]):
                assert "secretKeyRef" in e["valueFrom"], (c["name"], e["name"])
    (auth,) = [d for d in by_kind(objs, "Deployment") if d["metadata"]["name"].endswith("-auth")]
    pod = auth["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert "AUTH_SIGNING_KEY_FILE" not in env  # the rotating key directory, not one fixed file
    (mount,) = [
        m for m in pod["containers"][0]["volumeMounts"] if m["mountPath"] == env["AUTH_SIGNING_KEYS_DIR"]
    ]
    assert mount["readOnly"] is True and "subPath" not in mount  # Secret updates (rotation) reach the pods
    (vol,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert "items" not in vol["secret"]  # every key of the Secret is in the directory
    secrets = {s["metadata"]["name"]: s for s in by_kind(objs, "Secret")}
    if name == "default":
        assert secrets == {}  # existingSecret / existingSigningKeysSecret: the chart renders no Secret
        assert vol["secret"]["secretName"] == "petpro-signing-keys"
    else:
        assert set(secrets[vol["secret"]["secretName"]]["stringData"]) == {"auth-signing.pem"}
        assert all(
            not n.endswith(".pem")
            for s in secrets.values()
            if s is not secrets[vol["secret"]["secretName"]]
            for n in s["stringData"]
        )


def test_default_values_hold_no_secret() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert all(v == "" for v in values["secrets"]["create"].values())
    text = (CHART / "values.yaml").read_text()
    assert not re.search(
        r"(sk|rk)_(live|test)_\w+|whsec_\w+|BEGIN [A-Z ]*PRIVATE KEY|://[^/\s:]+:[^@\s]+@", text
    )


def test_latest_tag_is_refused() -> None:
    import helm_python as helm

    with pytest.raises(helm.HelmError, match="never latest"):
        render_mod.render({"image": {"tag": "latest"}})


def test_chart_created_secret_requires_every_value() -> None:
    import helm_python as helm

    with pytest.raises(helm.HelmError, match=r"secrets\.create\.databaseUrl"):
        render_mod.render({"secrets": {"existingSecret": ""}})


def test_only_envoy_is_reachable_from_outside_the_namespace(variant) -> None:
    _, objs, _ = variant
    policies = by_kind(objs, "NetworkPolicy")
    deny = [p for p in policies if p["metadata"]["name"].endswith("-default-deny")]
    assert deny and set(deny[0]["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    for p in policies:
        component = p["spec"]["podSelector"].get("matchLabels", {}).get("app.kubernetes.io/component")
        for rule in p["spec"].get("ingress", []):
            from_outside = any("namespaceSelector" in peer for peer in rule["from"])
            ports = {port["port"] for port in rule["ports"]}
            if from_outside:
                # from another namespace: Envoy's listener, or Prometheus on a metrics port only
                assert (component == "envoy" and ports == {8080}) or all(7501 <= x <= 7505 for x in ports), p
    booking = next(p for p in policies if p["metadata"]["name"].endswith("-booking"))
    callers = {
        peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
        for peer in booking["spec"]["ingress"][0]["from"]
    }
    assert callers == {"edge", "envoy"}


def test_ingress_routes_the_public_host_and_the_webhook_to_envoy(variant) -> None:
    _, objs, _ = variant
    (ing,) = by_kind(objs, "Ingress")
    paths = {p["path"]: p["backend"]["service"]["name"] for p in ing["spec"]["rules"][0]["http"]["paths"]}
    assert set(paths) == {"/", "/webhooks/stripe"}
    assert all(name.endswith("-envoy") for name in paths.values())


def test_envoy_config_map_is_the_dev_stack_generators_output_with_dns_clusters(variant) -> None:
    _, objs, _ = variant
    (cm,) = by_kind(objs, "ConfigMap")
    fullname = cm["metadata"]["name"].removesuffix("-envoy")
    config = json.loads(cm["data"]["envoy.json"])
    fresh = json.loads(json.dumps(render_mod.envoy_config()).replace(render_mod.PLACEHOLDER, fullname))
    assert config == fresh  # the default: behind the chart's Ingress, one trusted hop
    assert render_mod.http_connection_manager(config)["xffNumTrustedHops"] == 1
    clusters = {c["name"]: c for c in config["staticResources"]["clusters"]}

    def address(c: dict) -> dict:  # type: ignore[type-arg]
        return c["loadAssignment"]["endpoints"][0]["lbEndpoints"][0]["endpoint"]["address"]  # type: ignore[no-any-return]

    # every upstream is a Service name resolved by DNS, except the JWKS route back into Envoy itself
    internal = {n for n, c in clusters.items() if "envoyInternalAddress" in address(c)}
    assert internal == {"jwks_internal"}
    assert clusters["jwks_internal"]["type"] == "STATIC"
    upstream = [c for n, c in clusters.items() if n not in internal]
    assert {address(c)["socketAddress"]["address"] for c in upstream} == {
        f"{fullname}-edge",
        f"{fullname}-booking",
        f"{fullname}-auth",
        f"{fullname}-notif",  # NotificationService: the calendar feed and quiet hours
    }
    assert all(c["type"] == "STRICT_DNS" for c in upstream)


def test_committed_outputs_are_fresh() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "k8s" / "render.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def test_service_settings_become_prefixed_env_vars() -> None:
    """services.<svc>.settings.<KEY> → <SVC>_<KEY> on that service only; common.settings on all,
    overridden per service."""
    prefixes = {"auth": "AUTH", "booking": "BOOKING", "payment": "PAYMENT", "notif": "NOTIF", "edge": "EDGE"}
    values = {
        "common": {"settings": {"LOG_LEVEL": "DEBUG"}},
        "services": {svc: {"settings": {"SOME_KNOB": f"v-{svc}"}} for svc in prefixes},
    }
    values["services"]["booking"]["settings"]["LOG_LEVEL"] = "WARNING"
    deployments = {
        d["metadata"]["name"].removeprefix("petpro-"): d
        for d in by_kind(objects(render_mod.render(values)), "Deployment")
    }
    for svc, prefix in prefixes.items():
        env = {
            e["name"]: e.get("value")
            for e in deployments[svc]["spec"]["template"]["spec"]["containers"][0]["env"]
        }
        assert env[f"{prefix}_SOME_KNOB"] == f"v-{svc}"
        assert env[f"{prefix}_LOG_LEVEL"] == ("WARNING" if svc == "booking" else "DEBUG")
        assert not any(k.endswith("_SOME_KNOB") and not k.startswith(prefix) for k in env)


def test_every_documented_setting_is_reachable_through_values() -> None:
    """Each variable of docs/operations.md's configuration tables is named in the chart README's values table."""
    operations = (ROOT / "docs" / "operations.md").read_text()
    section = operations.split("\n## Configuration", 1)[1].split("\n## ", 1)[0]
    first_cells = re.findall(r"^\| ([^|]+) \|", section, re.M)
    variables = {v for cell in first_cells for v in re.findall(r"`([A-Z<][A-Z0-9_<>]+)`", cell)}
    assert len(variables) > 15
    chart_readme = (CHART / "README.md").read_text()
    missing = sorted(v for v in variables if f"`{v}`" not in chart_readme)
    assert missing == []


@pytest.mark.parametrize(
    ("client_address", "generator"),
    [
        ({"trustedProxyHops": 0}, {"trusted_hops": 0}),
        ({"trustedProxyHops": 2}, {"trusted_hops": 2}),
        (
            {"trustedProxyHops": 0, "trustedProxyCidrs": ["130.211.0.0/22", "35.191.0.0/16", "fd00::/8"]},
            {"trusted_hops": 0, "trusted_cidrs": ("130.211.0.0/22", "35.191.0.0/16", "fd00::/8")},
        ),
    ],
)
def test_envoy_client_address_values_render_what_the_generator_writes(
    client_address: dict[str, Any], generator: dict[str, Any]
) -> None:
    """envoy.clientAddress in the chart and EDGE_ENVOY_TRUSTED_PROXY_* in the dev stack give Envoy
    the same X-Forwarded-For model (edge.gateway.config.ClientAddress)."""
    rendered = render_mod.render(
        {"envoy": {"clientAddress": client_address}}, release="petpro", namespace="p"
    )
    (cm,) = by_kind(objects(rendered), "ConfigMap")
    config = json.loads(cm["data"]["envoy.json"])
    fresh = json.loads(
        json.dumps(render_mod.envoy_config(**generator)).replace(render_mod.PLACEHOLDER, "petpro")
    )
    assert config == fresh


@pytest.mark.parametrize(
    "client_address",
    [{"trustedProxyHops": 1, "trustedProxyCidrs": ["10.0.0.0/8"]}, {"trustedProxyCidrs": ["10.0.0.1"]}],
)
def test_envoy_client_address_values_that_envoy_would_refuse_fail_the_render(
    client_address: dict[str, Any],
) -> None:
    with pytest.raises(Exception, match="clientAddress"):
        render_mod.render({"envoy": {"clientAddress": client_address}}, release="petpro", namespace="p")


def test_behind_a_transaction_pooler_every_database_user_gets_the_pool_mode_and_the_direct_url() -> None:
    """database.poolMode: transaction (docs/operations.md "PgBouncer"): the services and the migrate
    Job learn the pool mode and where the server itself is (migrations' lock, the relay's LISTEN)."""
    objs = objects(
        render_mod.render({"database": {"poolMode": "transaction"}}, release="petpro", namespace="p")
    )
    users = {}
    for o in objs:
        if o["kind"] in ("Deployment", "Job"):
            env = {e["name"]: e for e in o["spec"]["template"]["spec"]["containers"][0].get("env", [])}
            if "DATABASE_URL" in env:
                users[o["metadata"]["name"]] = env
    assert set(users) == {f"petpro-{n}" for n in ("auth", "booking", "payment", "notif", "migrate")}
    for env in users.values():
        assert env["DATABASE_POOL_MODE"]["value"] == "transaction"
        assert env["DATABASE_DIRECT_URL"]["valueFrom"]["secretKeyRef"]["key"] == "DATABASE_DIRECT_URL"
    # the default (a server or a session pooler) adds nothing
    default = objects(render_mod.render({}, release="petpro", namespace="p"))
    assert not [o for o in default if "DATABASE_POOL_MODE" in json.dumps(o)]
    with pytest.raises(Exception, match="poolMode"):
        render_mod.render({"database": {"poolMode": "statement"}}, release="petpro", namespace="p")


def test_notif_mounts_the_push_keys_and_reads_twilios_credentials_from_secrets(variant) -> None:
    """FCM's service-account JSON and APNs' .p8 as read-only files of their Secrets, Twilio's SID and
    token from its Secret, the webhook URL on the public host; without the values, none of it."""
    name, objs, _ = variant
    (notif,) = [d for d in by_kind(objs, "Deployment") if d["metadata"]["name"].endswith("-notif")]
    pod = notif["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    env = {e["name"]: e for e in c["env"]}
    provider_env = {k for k in env if re.match(r"NOTIF_(FCM|APNS|SMS)_", k)}
    if name == "default":
        assert provider_env == set() and {v["name"] for v in pod["volumes"]} == {"tmp"}
        return
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    for provider, secret, variable, key in (
        ("fcm", "petpro-fcm", "NOTIF_FCM_CREDENTIALS_FILE", "service-account.json"),
        ("apns", "petpro-apns", "NOTIF_APNS_KEY_FILE", "AuthKey.p8"),
    ):
        mount = mounts[f"{provider}-key"]
        assert mount["readOnly"] is True and env[variable]["value"] == f"{mount['mountPath']}/{key}"
        assert volumes[f"{provider}-key"]["secret"] == {"secretName": secret, "defaultMode": 0o400}
    assert (env["NOTIF_APNS_KEY_ID"]["value"], env["NOTIF_APNS_TOPIC"]["value"]) == (
        "ABC123DEFG",
        "dev.petpro.app",
    )
    for variable, key in (
        ("NOTIF_SMS_ACCOUNT_SID", "TWILIO_ACCOUNT_SID"),
        ("NOTIF_SMS_AUTH_TOKEN", "TWILIO_AUTH_TOKEN"),
    ):
        assert env[variable]["valueFrom"]["secretKeyRef"] == {"name": "petpro-twilio", "key": key}
    assert env["NOTIF_SMS_FROM"]["value"] == "+15005550006"
    assert env["NOTIF_SMS_WEBHOOK_URL"]["value"] == "https://api.petpro.example.com/webhooks/twilio/sms"
    # only notif gets them
    for d in by_kind(objs, "Deployment"):
        if d is not notif:
            names = {e["name"] for e in d["spec"]["template"]["spec"]["containers"][0].get("env", [])}
            assert not {n for n in names if re.match(r"NOTIF_(FCM|APNS|SMS)_", n)}


def test_an_apns_key_without_its_ids_or_texts_without_a_sender_fail_the_render() -> None:
    for values in (
        {"notifications": {"apns": {"existingSecret": "petpro-apns"}}},
        {"notifications": {"sms": {"existingSecret": "petpro-twilio"}}},
    ):
        with pytest.raises(Exception, match=r"apns\.keyId|from"):
            render_mod.render(values)
