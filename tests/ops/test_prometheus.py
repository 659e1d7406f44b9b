"""ops/prometheus and ops/grafana against the real thing.

promtool checks the shipped config and alert rules and unit-tests each alert on synthetic series;
the metric names of the rules and the dashboard are checked against what signaling/metrics.py
exports; and a real Prometheus, run with the shipped config pointed at a real gateway (rendering
through the Serve app `avatar`, tests/conftest.py) and at the local Ray node, scrapes a real sender
session and evaluates the rules and every dashboard query.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
import yaml
from aiortc import RTCPeerConnection, RTCSessionDescription

import wire
from face3d.blendshapes import NUM_BLENDSHAPES
from face3d.coefficients import Coefficients
from inference.serve_config import ServingConfig
from signaling.auth import mint_token
from signaling.config import GatewayConfig
from signaling.gateway import start_gateway
from signaling.metrics import LATENCY_BUCKETS_S, GatewayMetrics
from signaling.renderer import ServeRenderer

OPS = Path(__file__).resolve().parents[2] / "ops"
PROMETHEUS_YML = OPS / "prometheus" / "prometheus.yml"
ALERTS_YML = OPS / "prometheus" / "alerts.yml"
DASHBOARD_JSON = OPS / "grafana" / "headcast-dashboard.json"

PROMETHEUS = shutil.which("prometheus")
PROMTOOL = shutil.which("promtool")
needs_prometheus = pytest.mark.skipif(
    PROMETHEUS is None or PROMTOOL is None,
    reason="prometheus/promtool not on PATH: install the Debian package `prometheus` (make system)",
)

SECRET = b"p" * 32
TARGET = "woman"
ROOM = "metrics-room"
FPS = 25
# Names the rules and panels may use although a session without failures never emits them: they only appear
# once a render fails for good or a replica raises.
EMITTED_ONLY_ON_FAILURE = {"headcast_gateway_render_failures_total", "ray_serve_deployment_error_counter_total"}
METRIC_NAME = re.compile(r"\b(?:headcast_gateway|ray_serve)_\w+")


# ------------------------------------------------------------------------------------ the shipped files


def alert_rules() -> dict[str, dict[str, Any]]:
    """Return alerts.yml's alerting rules by alert name."""
    groups = yaml.safe_load(ALERTS_YML.read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"] if "alert" in rule}


def dashboard_queries() -> list[str]:
    """Return the PromQL of every panel target of the dashboard, Grafana's variables left in."""
    dashboard = json.loads(DASHBOARD_JSON.read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def as_promql(grafana_expr: str) -> str:
    """Return a dashboard query with Grafana's variables replaced by what Grafana would send for them."""
    for variable, value in {
        "$__rate_interval": "15s",  # Grafana: at least 4 scrape intervals
        "$__range": "1m",
        "$instance": ".*",  # the "All" choice (allValue)
        "$app": "avatar",
    }.items():
        grafana_expr = grafana_expr.replace(variable, value)
    assert "$" not in grafana_expr, f"a Grafana variable this test does not know: {grafana_expr}"
    return grafana_expr


def gateway_sample_names() -> set[str]:
    """Return every sample name a gateway's /metrics can carry (counters with _total, histograms' _bucket …)."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
        "gauge": ("",),
    }
    return {family.name + suffix for family in GatewayMetrics().registry.collect() for suffix in suffixes[family.type]}


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """Return promtool's finished run with `args` (output captured)."""
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *map(str, args)], capture_output=True, text=True, timeout=60, check=False)


@needs_prometheus
def test_promtool_accepts_the_config_and_the_rules() -> None:
    for args in (("check", "config", PROMETHEUS_YML), ("check", "rules", ALERTS_YML)):
        run = promtool(*args)
        assert run.returncode == 0, run.stdout + run.stderr


def test_every_headcast_metric_the_rules_and_panels_name_is_exported_by_the_gateway() -> None:
    used = set(METRIC_NAME.findall(ALERTS_YML.read_text())) | {
        name for expr in dashboard_queries() for name in METRIC_NAME.findall(expr)
    }
    gateway_names = {name for name in used if name.startswith("headcast_gateway_")}
    assert gateway_names, "the rules and the dashboard use no gateway metric at all"
    assert gateway_names <= gateway_sample_names(), sorted(gateway_names - gateway_sample_names())


def test_the_dashboard_is_well_formed() -> None:
    dashboard = json.loads(DASHBOARD_JSON.read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    titles = {panel["title"] for panel in dashboard["panels"]}
    # The panels the design asks for (docs/design.md, Observability).
    for wanted in ("Stage latency p50", "Stage latency p95", "Rendered fps per sender", "Frames rendered",
                   "Drops by reason", "Sessions and rooms", "Bytes in / out", "Render retries and failures",
                   "Refusals by code"):  # fmt: skip
        assert wanted in titles
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


# --------------------------------------------------------------------------------- alerts, unit-tested


GW1 = 'job="headcast-gateway", instance="gw-1:8080"'
GW2 = 'job="headcast-gateway", instance="gw-2:8080"'
GW3 = 'job="headcast-gateway", instance="gw-3:8080"'
RAY = 'job="ray", instance="ray-head:8090", application="avatar"'
REPLICA = f'{RAY}, deployment="AvatarDeployment", replica="r1"'


def series(name: str, labels: str, values: str) -> dict[str, str]:
    """Return one promtool input series: `name{labels}` taking `values`, one a minute.

    '0+60x30' is a counter growing by 60 a minute (1/s) for 30 minutes; '2x20' a gauge staying at 2.
    """
    return {"series": f"{name}{{{labels}}}", "values": values}


def expect(eval_time: str, alert: str, *firing: dict[str, Any]) -> dict[str, Any]:
    """Return a promtool check: at `eval_time`, exactly the `firing` alerts named `alert` fire (none if empty)."""
    return {"eval_time": eval_time, "alertname": alert, "exp_alerts": list(firing)}


def fires(alert: str, summary: str, **labels: str) -> dict[str, Any]:
    """Return promtool's expectation of one firing `alert`: its labels, and its annotations with `summary`.

    The description is taken from alerts.yml as it is (it has no template to check), so the
    expectation pins what the templated summary renders to without restating the prose.
    """
    rule = alert_rules()[alert]
    assert "{{" not in rule["annotations"]["description"], f"{alert}: a templated description needs its own check"
    return {
        "exp_labels": {**labels, **rule["labels"]},
        "exp_annotations": {"summary": summary, "description": rule["annotations"]["description"]},
    }


def on_gw1(alert: str, summary: str, **labels: str) -> dict[str, Any]:
    """Return the expectation of `alert` firing for gateway gw-1 alone."""
    return fires(alert, summary, job="headcast-gateway", instance="gw-1:8080", **labels)


def alert_cases() -> list[dict[str, Any]]:
    """Return promtool's test groups: synthetic series, and which alerts must fire when (and which not)."""
    # Frame rates: gw-1 has 2 senders sending 50 packets/s and renders 20 frames/s, under 80% of both
    # 2 × 25 and 50. gw-2's senders send 20 packets/s and 19 render: not a gateway fault. gw-3's one
    # sender sends 60 packets/s and 25 render: on target.
    rates = ((GW1, 2, 3000, 1200), (GW2, 2, 1200, 1140), (GW3, 1, 3600, 1500))  # senders, packets/min, frames/min
    serve_down = "The Serve app avatar is not running or has no healthy replica"
    return [
        {
            "name": "a gateway that stops answering",
            "input_series": [series("up", GW1, "1 1 0x10"), series("up", GW2, "1x12")],
            "alert_rule_test": [
                expect("2m", "HeadcastGatewayDown"),  # down, but not for 1m yet
                expect(
                    "5m",
                    "HeadcastGatewayDown",
                    on_gw1("HeadcastGatewayDown", "Gateway gw-1:8080 does not answer /metrics"),
                ),
            ],
        },
        {
            # gw-1's renders all take 40-80 ms, gw-2's under 20 ms. The p95 interpolates linearly inside
            # gw-1's (40 ms, 80 ms] bucket: 40 + 0.95 × 40 = 78 ms.
            "name": "render latency",
            "input_series": [
                *(
                    series("headcast_gateway_stage_seconds_bucket", f'{GW1}, stage="render", le="{le}"', values)
                    for le, values in (("0.02", "0x20"), ("0.04", "0x20"), ("0.08", "0+60x20"), ("+Inf", "0+60x20"))
                ),
                *(
                    series("headcast_gateway_stage_seconds_bucket", f'{GW2}, stage="render", le="{le}"', "0+60x20")
                    for le in ("0.02", "0.04", "0.08", "+Inf")
                ),
            ],
            "alert_rule_test": [
                expect(
                    "15m",
                    "HeadcastRenderLatencyHigh",
                    on_gw1("HeadcastRenderLatencyHigh", "Render p95 on gw-1:8080 is 78ms, over the 40 ms budget"),
                ),
            ],
        },
        {
            "name": "frame rates against the senders' target and their packets",
            "input_series": [
                *(series("headcast_gateway_sessions", f'{gw}, role="send"', f"{n}x20") for gw, n, _, _ in rates),
                *(series("headcast_gateway_packets_received_total", gw, f"0+{p}x20") for gw, _, p, _ in rates),
                *(series("headcast_gateway_frames_rendered_total", gw, f"0+{f}x20") for gw, _, _, f in rates),
            ],
            "alert_rule_test": [
                expect(
                    "12m",
                    "HeadcastFpsBelowTarget",
                    on_gw1(
                        "HeadcastFpsBelowTarget",
                        "Gateway gw-1:8080 renders 20.0 frames/s, under 80% of its senders' 25 fps",
                    ),
                ),
            ],
        },
        {
            # gw-1 drops 10% as bad; gw-2 drops 40% as superseded only: rendering slower than packets, by design.
            "name": "drop ratios",
            "input_series": [
                series("headcast_gateway_packets_received_total", GW1, "0+1500x30"),
                series("headcast_gateway_packets_dropped_total", f'{GW1}, reason="bad"', "0+150x30"),
                series("headcast_gateway_packets_dropped_total", f'{GW1}, reason="superseded"', "0+600x30"),
                series("headcast_gateway_packets_received_total", GW2, "0+1500x30"),
                series("headcast_gateway_packets_dropped_total", f'{GW2}, reason="bad"', "0x30"),
                series("headcast_gateway_packets_dropped_total", f'{GW2}, reason="superseded"', "0+600x30"),
            ],
            "alert_rule_test": [
                expect(
                    "20m",
                    "HeadcastPacketDropRatioHigh",
                    on_gw1("HeadcastPacketDropRatioHigh", "10% of the coefficient packets on gw-1:8080 are dropped"),
                ),
            ],
        },
        {
            # gw-1 loses 6 frames a minute (0.1/s) and retries 10% of its renders; gw-2 loses one a minute
            # (under 0.05/s) and retries 1%.
            "name": "render failures and retries",
            "input_series": [
                series("headcast_gateway_render_failures_total", f'{GW1}, code="unavailable"', "0+6x30"),
                series("headcast_gateway_render_failures_total", f'{GW2}, code="render_failed"', "0+1x30"),
                series("headcast_gateway_frames_rendered_total", GW1, "0+1200x30"),
                series("headcast_gateway_render_retries_total", GW1, "0+120x30"),
                series("headcast_gateway_frames_rendered_total", GW2, "0+1200x30"),
                series("headcast_gateway_render_retries_total", GW2, "0+12x30"),
            ],
            "alert_rule_test": [
                expect(
                    "20m",
                    "HeadcastRenderFailures",
                    on_gw1(
                        "HeadcastRenderFailures",
                        "Frames fail to render on gw-1:8080 (unavailable, 0.10/s)",
                        code="unavailable",
                    ),
                ),
                expect(
                    "20m",
                    "HeadcastRenderRetriesHigh",
                    on_gw1("HeadcastRenderRetriesHigh", "10% of renders on gw-1:8080 are retried"),
                ),
            ],
        },
        {
            # gw-1: 0.5 bad tokens a second; gw-2: refusals that are not about tokens, and a few forbidden.
            "name": "auth refusals",
            "input_series": [
                series("headcast_gateway_refusals_total", f'{GW1}, code="unauthorized"', "0+30x30"),
                series("headcast_gateway_refusals_total", f'{GW2}, code="too_large"', "0+60x30"),
                series("headcast_gateway_refusals_total", f'{GW2}, code="forbidden"', "0+6x30"),
            ],
            "alert_rule_test": [
                expect(
                    "20m",
                    "HeadcastAuthRefusalsHigh",
                    on_gw1("HeadcastAuthRefusalsHigh", "Gateway gw-1:8080 refuses 0.50 requests/s for bad tokens"),
                ),
            ],
        },
        {
            "name": "the Serve app stuck deploying",
            "input_series": [series("ray_serve_application_status", RAY, "5x10")],  # 5: DEPLOYING
            "alert_rule_test": [
                expect("5m", "HeadcastServeAppDown", fires("HeadcastServeAppDown", serve_down, application="avatar")),
                expect("9m", "HeadcastServeMetricsAbsent"),
            ],
        },
        {
            "name": "the Serve app running without a healthy replica",
            "input_series": [
                series("ray_serve_application_status", RAY, "6x10"),
                series("ray_serve_deployment_replica_healthy", REPLICA, "0x10"),
            ],
            "alert_rule_test": [
                expect("5m", "HeadcastServeAppDown", fires("HeadcastServeAppDown", serve_down, application="avatar")),
            ],
        },
        {
            "name": "the Serve app healthy",
            "input_series": [
                series("ray_serve_application_status", RAY, "6x10"),
                series("ray_serve_deployment_replica_healthy", REPLICA, "1x10"),
            ],
            "alert_rule_test": [expect("9m", "HeadcastServeAppDown"), expect("9m", "HeadcastServeMetricsAbsent")],
        },
        {
            "name": "no Ray metrics scraped at all",
            "input_series": [series("up", GW1, "1x10")],
            "alert_rule_test": [
                expect("3m", "HeadcastServeMetricsAbsent"),  # absent, but not for 5m yet
                expect(
                    "9m",
                    "HeadcastServeMetricsAbsent",
                    fires("HeadcastServeMetricsAbsent", "No metrics from the Serve app avatar", application="avatar"),
                ),
            ],
        },
    ]


@needs_prometheus
def test_each_alert_fires_on_its_condition_and_only_there(tmp_path: Path) -> None:
    cases = alert_cases()
    tested = {case["alertname"] for test in cases for case in test["alert_rule_test"]}
    assert tested == set(alert_rules()), f"alerts without a case: {sorted(set(alert_rules()) - tested)}"
    tests = [{"interval": "1m", **test} for test in cases]
    unit_tests = tmp_path / "alerts_test.yml"
    unit_tests.write_text(
        yaml.safe_dump({"rule_files": [str(ALERTS_YML)], "evaluation_interval": "1m", "tests": tests})
    )
    run = promtool("test", "rules", unit_tests)
    assert run.returncode == 0, run.stdout + run.stderr


# ------------------------------------------------------------------------- a real Prometheus, live


def face(seq: int) -> Coefficients:
    """Return frame `seq` of a frontal face whose mouth opens and closes, captured 40 ms apart."""
    blendshapes = np.full(NUM_BLENDSHAPES, 0.5 + 0.4 * math.sin(seq / 5), np.float32)
    return Coefficients(seq, 40 * seq, blendshapes, np.zeros(3, np.float32), np.zeros(2, np.float32), 0.012)


def free_port() -> int:
    """Return a TCP port free on 127.0.0.1 right now (the OS's pick)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def ray_metrics_address() -> str:
    """Return host:port of this process's Ray node's metrics export (picked at random by `ray.init`)."""
    import ray

    node = next(node for node in ray.nodes() if node["Alive"])
    return f"127.0.0.1:{node['MetricsExportPort']}"


def scrape_config(gateway: str, ray_node: str) -> dict[str, Any]:
    """Return the shipped prometheus.yml pointed at `gateway` and `ray_node`, scraping and evaluating every second."""
    config = yaml.safe_load(PROMETHEUS_YML.read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(ALERTS_YML)]
    targets = {"headcast-gateway": gateway, "ray": ray_node}
    for job in config["scrape_configs"]:
        job["static_configs"][0]["targets"] = [targets.pop(job["job_name"])]
    assert not targets, f"prometheus.yml has no job {sorted(targets)}"
    return config


class Sender:
    """A sender peer as docs/live-protocol.md has it: data channel "coeffs" and a recvonly video transceiver."""

    def __init__(self) -> None:
        self.pc = RTCPeerConnection()
        self.channel = self.pc.createDataChannel("coeffs", ordered=False, maxRetransmits=0)
        self.pc.addTransceiver("video", direction="recvonly")
        self.render_ms: list[float] = []  # the gateway's render round trips, from its `rendered` messages
        self.channel.on("message", self._on_message)

    def _on_message(self, message: bytes | str) -> None:
        if isinstance(message, str) and (data := json.loads(message))["type"] == "rendered":
            self.render_ms.append(float(data["ms"]["render"]))

    async def join(self, http: aiohttp.ClientSession, url: str) -> None:
        """Offer to the gateway at `url` and apply its answer; fails the test on a refusal."""
        await self.pc.setLocalDescription(await self.pc.createOffer())
        token = mint_token(SECRET, "bob", ROOM, "send", (TARGET,))
        offer = {"sdp": self.pc.localDescription.sdp, "type": "offer", "target": TARGET}
        async with http.post(f"{url}/api/rooms/{ROOM}/send", json=offer,
                             headers={"Authorization": f"Bearer {token}"}) as response:  # fmt: skip
            answer = await response.json()
            assert response.status == 200, answer
        await self.pc.setRemoteDescription(RTCSessionDescription(answer["sdp"], answer["type"]))

    async def opened(self) -> None:
        """Return once the data channel is open (sending on it before raises)."""

        async def channel_state() -> str | None:
            return None if self.channel.readyState == "open" else f"data channel {self.channel.readyState}"

        await eventually(channel_state, 30)

    async def drive(self) -> None:
        """Send plain wire packets at FPS until cancelled."""
        seq = 0
        while True:
            self.channel.send(wire.encode_plain(face(seq)))
            seq += 1
            await asyncio.sleep(1 / FPS)


class PrometheusAPI:
    """Prometheus' HTTP API at `url`, through `http`."""

    def __init__(self, http: aiohttp.ClientSession, url: str) -> None:
        self.http = http
        self.url = url

    async def get(self, path: str, **params: str) -> Any:
        """Return the `data` of a successful API answer; fails the test on an error answer."""
        async with self.http.get(f"{self.url}{path}", params=params) as response:
            body = await response.json()
        assert body["status"] == "success", f"{path} {params}: {body}"
        return body["data"]

    async def ready(self, timeout_s: float = 60) -> None:
        """Return once Prometheus answers that it is ready (it refuses connections while it starts)."""

        async def answers() -> str | None:
            try:
                async with self.http.get(f"{self.url}/-/ready") as response:
                    return None if response.status == 200 else f"Prometheus answers {response.status} to /-/ready"
            except aiohttp.ClientConnectionError as error:
                return f"Prometheus is not listening yet ({error})"

        await eventually(answers, timeout_s)

    async def values(self, expr: str) -> list[float]:
        """Return the values of the instant vector `expr` evaluates to now (empty when it has no series)."""
        data = await self.get("/api/v1/query", query=expr)
        assert data["resultType"] == "vector", f"{expr} is a {data['resultType']}"
        return [float(sample["value"][1]) for sample in data["result"]]


async def eventually(check: Callable[[], Awaitable[str | None]], timeout_s: float) -> None:
    """Return once `check()` returns None (nothing missing); fail with its last complaint after `timeout_s`.

    The bounds are a few times what a scrape, a rule evaluation or a render takes on a loaded 2-core
    machine: they only stop a test that would hang.
    """
    deadline = time.monotonic() + timeout_s
    while (missing := await check()) is not None:
        if time.monotonic() > deadline:
            pytest.fail(f"after {timeout_s:g} s: {missing}")
        await asyncio.sleep(0.5)


def bucket_bounds(seconds: float) -> tuple[float, float]:
    """Return the (lower, upper] bounds of the latency bucket holding `seconds`."""
    edges = (0.0, *LATENCY_BUCKETS_S, math.inf)
    upper = next(i for i, edge in enumerate(edges) if seconds <= edge)
    return edges[max(upper - 1, 0)], edges[upper]


@needs_prometheus
@pytest.mark.slow
def test_a_real_prometheus_scrapes_a_live_gateway_and_ray(avatar_app: ServingConfig, tmp_path: Path) -> None:
    asyncio.run(scrape_a_live_session(avatar_app, tmp_path))


async def scrape_a_live_session(avatar_app: ServingConfig, tmp_path: Path) -> None:
    """Drive a sender through a gateway while Prometheus scrapes it and Ray, then check what Prometheus holds."""
    assert PROMETHEUS is not None
    started = time.monotonic()
    running = await start_gateway(
        GatewayConfig.load(port=0, app_name=avatar_app.app_name), ServeRenderer(avatar_app.app_name), SECRET
    )
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump(scrape_config(running.url.removeprefix("http://"), ray_metrics_address())))
    port = free_port()
    log = (tmp_path / "prometheus.log").open("w")
    prometheus = subprocess.Popen(
        [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    sender = Sender()
    driving: asyncio.Task[None] | None = None
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{running.url}/api/rooms/{ROOM}/send", json={"sdp": "v=0", "type": "offer"},
                                 headers={"Authorization": "Bearer not-a-token"}) as refused:  # fmt: skip
                assert (refused.status, (await refused.json())["code"]) == (401, "unauthorized")
            await sender.join(http, running.url)
            await sender.opened()
            driving = asyncio.create_task(sender.drive())

            async def first_render() -> str | None:
                if driving.done():
                    driving.result()  # raises what stopped the sender
                return None if sender.render_ms else "no frame rendered yet"

            await eventually(first_render, 90)
            sender.channel.send(bytes([0xEE, 0, 0]))  # an unknown wire version, too short for a sequence number

            api = PrometheusAPI(http, f"http://127.0.0.1:{port}")
            await api.ready()
            await check_samples(api, sender)
            await check_rules(api)
            await check_dashboard_queries(api)
            print(f"{len(sender.render_ms)} frames rendered; whole scenario {time.monotonic() - started:.1f} s")
    except BaseException:
        log.flush()
        print((tmp_path / "prometheus.log").read_text()[-4000:])
        raise
    finally:
        if driving is not None:
            driving.cancel()
        await sender.pc.close()
        await running.stop()
        prometheus.terminate()
        try:
            prometheus.wait(timeout=30)
        except subprocess.TimeoutExpired:
            prometheus.kill()
            prometheus.wait()
        log.close()


async def check_samples(api: PrometheusAPI, sender: Sender) -> None:
    """Wait until Prometheus holds the session's frames, bad packet, refusal, render latency and Ray's replicas."""
    gateway = 'job="headcast-gateway", component="gateway"'  # component: the label prometheus.yml attaches
    render_p95 = (
        "histogram_quantile(0.95, sum by (le) "
        f'(rate(headcast_gateway_stage_seconds_bucket{{{gateway}, stage="render"}}[30s])))'
    )
    # Each query must give exactly one sample (one gateway, one Ray node) whose value passes its test.
    wanted: dict[str, Callable[[float], bool]] = {
        f"headcast_gateway_frames_rendered_total{{{gateway}}}": lambda frames: frames > 0,
        f'headcast_gateway_packets_dropped_total{{{gateway}, reason="bad"}}': lambda bad: bad >= 1,
        f'headcast_gateway_refusals_total{{{gateway}, code="unauthorized"}}': lambda refused: refused >= 1,
        render_p95: lambda seconds: math.isfinite(seconds) and seconds > 0,
        'sum(ray_serve_deployment_replica_healthy{job="ray", component="ray", application="avatar"})': lambda n: n >= 1,
    }
    last: dict[str, list[float]] = {}

    async def check() -> str | None:
        for expr in wanted:
            last[expr] = await api.values(expr)
        missing = {expr: values for expr, values in last.items() if not (len(values) == 1 and wanted[expr](values[0]))}
        return f"these queries do not hold yet: {missing}" if missing else None

    await eventually(check, 90)
    # histogram_quantile interpolates inside the bucket that holds the quantile, so it lies between the
    # bucket of the fastest render the sender was told of and the bucket of the slowest.
    p95_s = last[render_p95][0]
    fastest_s, slowest_s = min(sender.render_ms) / 1000, max(sender.render_ms) / 1000
    assert bucket_bounds(fastest_s)[0] <= p95_s <= bucket_bounds(slowest_s)[1], (p95_s, fastest_s, slowest_s)


async def check_rules(api: PrometheusAPI) -> None:
    """Wait until every alert rule has been evaluated without error; the ones about outages must be inactive."""
    outages = {"HeadcastGatewayDown", "HeadcastServeAppDown", "HeadcastServeMetricsAbsent"}

    async def check() -> str | None:
        data = await api.get("/api/v1/rules", type="alert")
        rules = {rule["name"]: rule for group in data["groups"] for rule in group["rules"]}
        assert set(rules) == set(alert_rules()), "Prometheus loaded other rules than alerts.yml's"
        failed = {name: rule["lastError"] for name, rule in rules.items() if rule["health"] == "err"}
        assert not failed, f"rules failing to evaluate: {failed}"
        pending = sorted(name for name, rule in rules.items() if rule["health"] != "ok")
        if pending:
            return f"rules not evaluated yet: {pending}"
        # The Serve rules may have seen no Ray sample on their first evaluation: wait for one with data.
        active = {name: rules[name]["state"] for name in outages if rules[name]["state"] != "inactive"}
        return f"outage alerts active while everything is up: {active}" if active else None

    await eventually(check, 60)


async def check_dashboard_queries(api: PrometheusAPI) -> None:
    """Check that every dashboard query evaluates, and that every metric it or a rule names has been scraped."""
    queries = dashboard_queries()
    for expr in queries:
        await api.values(as_promql(expr))  # fails the test on a PromQL error
    named = set(METRIC_NAME.findall(ALERTS_YML.read_text())) | {
        n for expr in queries for n in METRIC_NAME.findall(expr)
    }
    used = named - EMITTED_ONLY_ON_FAILURE

    async def check() -> str | None:
        scraped = set(await api.get("/api/v1/label/__name__/values"))
        missing = sorted(used - scraped)
        return f"dashboard metrics Prometheus never scraped: {missing}" if missing else None

    # Ray's replicas report their own metrics every few seconds, after the node's.
    await eventually(check, 60)
