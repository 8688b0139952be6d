"""gateway/render.py reproduces kong.yml in nginx, or refuses what it cannot reproduce."""

from __future__ import annotations

import copy
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from gateway import render

KONG = Path(render.__file__).with_name("kong.yml")


@pytest.fixture
def kong() -> dict:
    return yaml.safe_load(KONG.read_text())


def test_rendered_configuration_is_accepted_by_nginx(tmp_path: Path) -> None:
    assert render.main(["--out", str(tmp_path / "nginx.conf")]) == 0
    result = subprocess.run(
        ["nginx", "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_every_route_becomes_a_location_to_its_service(kong: dict) -> None:
    model = render.build_model(kong, {})
    rendered = {(location.matcher, location.upstream) for location in model["locations"]}
    expected = {
        (render._matcher(path), service["name"])
        for service in kong["services"]
        for route in service["routes"]
        for path in route["paths"]
    }
    assert rendered == expected
    assert set(model["upstreams"]) == {"auth", "tasks", "admin", "notify", "web"}


def test_ports_come_from_the_environment(kong: dict) -> None:
    model = render.build_model(kong, {"TASKS_PORT": "15002", "GATEWAY_PORT": "18000", "GATEWAY_TLS_PORT": "18443"})
    assert model["upstreams"]["tasks"].servers == ["127.0.0.1:15002"]
    assert model["upstreams"]["auth"].servers == ["127.0.0.1:5001"]
    assert (model["listen_port"], model["tls_port"]) == (18000, 18443)


def test_each_service_is_an_upstream_of_its_replicas_as_kong_balances_and_checks_them(kong: dict) -> None:
    env = {"REPLICAS": "3", "WEB_REPLICAS": "1", "REPLICA_PORT_STEP": "10", "TASKS_PORT": "15002"}
    upstreams = render.build_model(kong, env)["upstreams"]
    assert upstreams["tasks"].servers == ["127.0.0.1:15002", "127.0.0.1:15012", "127.0.0.1:15022"]
    assert upstreams["auth"].servers == ["127.0.0.1:5001", "127.0.0.1:5011", "127.0.0.1:5021"]
    assert upstreams["web"].servers == ["127.0.0.1:5005"]
    kong_tasks = next(upstream for upstream in kong["upstreams"] if upstream["name"] == "tasks")
    assert kong_tasks["algorithm"] == "least-connections" and upstreams["tasks"].balance == "least_conn"
    assert upstreams["tasks"].max_fails == kong_tasks["healthchecks"]["passive"]["unhealthy"]["tcp_failures"]
    assert upstreams["tasks"].fail_timeout_s == kong_tasks["healthchecks"]["active"]["unhealthy"]["interval"]
    text = render.render(KONG, Path("/tmp"), env)
    assert "least_conn;\n        server 127.0.0.1:15002 max_fails=3 fail_timeout=5s;" in text
    assert "upstream tasks {\n        # Shared by every nginx worker" in text and "zone tasks 64k;" in text


def test_an_instance_being_restarted_is_taken_out_and_never_the_last_one(kong: dict) -> None:
    """scripts/reload drains an instance with GATEWAY_DRAINING before it stops it."""
    env = {"REPLICAS": "2", "WEB_REPLICAS": "1", "GATEWAY_DRAINING": "auth:2"}
    upstreams = render.build_model(kong, env)["upstreams"]
    assert upstreams["auth"].draining == ["127.0.0.1:5011"] and upstreams["tasks"].draining == []
    assert "server 127.0.0.1:5011 max_fails=3 fail_timeout=5s down;" in render.render(KONG, Path("/tmp"), env)
    both = render.build_model(kong, {**env, "GATEWAY_DRAINING": "auth:1, auth:2"})["upstreams"]
    assert both["auth"].draining == []  # not every instance: that would be an outage
    with pytest.raises(render.KongConfigError, match="names no instance of auth"):
        render.build_model(kong, {**env, "GATEWAY_DRAINING": "auth:3"})


def test_every_service_has_a_kong_upstream_with_active_and_passive_checks(kong: dict) -> None:
    upstreams = {upstream["name"]: upstream for upstream in kong["upstreams"]}
    for service in kong["services"]:
        upstream = upstreams[service["name"]]
        assert upstream["targets"] == [{"target": service["url"].removeprefix("http://")}]
        assert {"active", "passive"} <= set(upstream["healthchecks"])
        # Kong takes a target back only through an active check: passive alone would leave it out.
        assert upstream["healthchecks"]["active"]["healthy"]["successes"] >= 1


def test_an_algorithm_nginx_cannot_balance_by_is_refused(kong: dict) -> None:
    broken = copy.deepcopy(kong)
    broken["upstreams"][0]["algorithm"] = "consistent-hashing"
    with pytest.raises(render.KongConfigError, match="consistent-hashing"):
        render.build_model(broken, {})


def test_only_idempotent_requests_are_retried_on_the_next_instance(tmp_path: Path) -> None:
    text = render.render(KONG, tmp_path, {})
    assert "proxy_next_upstream error timeout;" in text
    # nginx's default: a POST or PATCH already sent is not retried
    assert re.search(r"proxy_next_upstream [^;]*non_idempotent", text) is None
    assert "proxy_next_upstream_tries 3;" in text


def test_a_request_that_timed_out_is_not_tried_again_on_another_instance(tmp_path: Path) -> None:
    text = render.render(KONG, tmp_path, {})
    pairs = re.findall(r"proxy_read_timeout (\d+)ms;.*?proxy_next_upstream_timeout (\d+)ms;", text, re.S)
    assert len(pairs) == text.count("proxy_read_timeout") > 1
    assert all(read == total for read, total in pairs), pairs


def test_https_with_http2_listens_with_the_given_certificate_and_nginx_accepts_it(tmp_path: Path) -> None:
    subprocess.run(["scripts/tls"], cwd=render.HERE.parent, env={"PATH": "/usr/bin:/bin", "TASKFLOW_VAR": str(tmp_path)},
                   check=True, capture_output=True)
    tls = tmp_path / "tls"
    out = tmp_path / "gateway" / "nginx.conf"
    out.parent.mkdir()
    arguments = ["--out", str(out), "--tls-certificate", str(tls / "server.pem"), "--tls-key", str(tls / "server.key")]
    assert render.main(arguments) == 0
    text = out.read_text()
    assert "listen 127.0.0.1:8443 ssl http2;" in text and f"ssl_certificate {tls / 'server.pem'};" in text
    result = subprocess.run(["nginx", "-t", "-p", str(out.parent), "-c", str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "8443" not in render.render(KONG, tmp_path, {})  # without a certificate, HTTP alone


def test_json_html_javascript_and_css_of_1_kib_and_more_are_compressed(tmp_path: Path) -> None:
    text = render.render(KONG, tmp_path, {})
    assert "gzip on;" in text and "gzip_min_length 1024;" in text and "gzip_proxied any;" in text
    types = text.split("gzip_types ")[1].split(";")[0].split()
    assert {"application/json", "application/problem+json", "application/javascript", "text/css"} <= set(types)
    # Debian's module, which scripts/bootstrap installs
    assert f"load_module {render.BROTLI_MODULE};" in text and "brotli_min_length 1024;" in text


def test_route_plugin_replaces_the_global_one_and_is_matched_first(kong: dict) -> None:
    locations = render.build_model(kong, {})["locations"]
    credentials = [location for location in locations if location.route == "auth-credentials"]
    assert locations[0].route == "auth-credentials"
    assert [(limit.limit, limit.period) for limit in credentials[0].rate_limits] == [(30, "minute")]
    assert credentials[0].retry_after == 2
    tasks = next(location for location in locations if location.route == "tasks")
    assert [(limit.zone, limit.limit, limit.period) for limit in tasks.rate_limits] == [("global_per_second", 100, "second")]


def test_body_limit_follows_request_size_limiting(kong: dict) -> None:
    assert render.build_model(kong, {})["max_body"] == "1m"


def test_an_unknown_plugin_is_refused(kong: dict) -> None:
    changed = copy.deepcopy(kong)
    changed["plugins"].append({"name": "key-auth"})
    with pytest.raises(render.KongConfigError, match="key-auth"):
        render.build_model(changed, {})


def test_a_window_nginx_cannot_count_is_refused(kong: dict) -> None:
    changed = copy.deepcopy(kong)
    changed["services"][0]["routes"][0]["plugins"][0]["config"]["hour"] = 1000
    with pytest.raises(render.KongConfigError, match="hour"):
        render.build_model(changed, {})


@pytest.mark.parametrize("policy", ["local", "redis"])
def test_shared_and_local_counters_render_as_the_one_nginx_counting_itself(kong: dict, policy: str) -> None:
    changed = copy.deepcopy(kong)
    for plugin in [changed["plugins"], changed["services"][0]["routes"][0]["plugins"]]:
        next(p for p in plugin if p["name"] == "rate-limiting")["config"]["policy"] = policy
    locations = render.build_model(changed, {})["locations"]
    assert locations == render.build_model(kong, {})["locations"]


def test_counters_of_a_kong_cluster_database_are_refused(kong: dict) -> None:
    changed = copy.deepcopy(kong)
    next(p for p in changed["plugins"] if p["name"] == "rate-limiting")["config"]["policy"] = "cluster"
    with pytest.raises(render.KongConfigError, match="policy"):
        render.build_model(changed, {})


def test_stripping_paths_is_refused(kong: dict) -> None:
    changed = copy.deepcopy(kong)
    changed["services"][1]["routes"][0]["strip_path"] = True
    with pytest.raises(render.KongConfigError, match="strip_path"):
        render.build_model(changed, {})


def test_kong_file_validates_with_deck() -> None:
    result = subprocess.run(["deck", "validate", "-s", str(KONG)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_benchmark_rendering_leaves_out_only_the_rate_limits(kong: dict, tmp_path: Path) -> None:
    limited = render.build_model(kong, {})
    unlimited = render.build_model(kong, {}, rate_limiting=False)
    assert unlimited["zones"] == [] and all(not location.rate_limits for location in unlimited["locations"])
    assert [location.matcher for location in unlimited["locations"]] == [location.matcher for location in limited["locations"]]
    assert render.main(["--out", str(tmp_path / "nginx.conf"), "--without-rate-limits"]) == 0
    text = (tmp_path / "nginx.conf").read_text()
    assert "limit_req " not in text and "rate-limiting left out" in text


def test_every_error_nginx_answers_itself_gets_a_problem_page(tmp_path: Path) -> None:
    text = render.render(KONG, tmp_path, {})
    for status in (400, 404, 405, 413, 414, 429, 502, 503, 504):
        assert f"error_page {status} /_gateway_problem/{status};" in text
        assert f'"status":{status}' in text
    assert "error_page 494 =431 /_gateway_problem/431;" in text and '"status":431' in text
    assert text.count("types { }") == 1 + text.count("location = /_gateway_problem/")  # no extension decides the type
    assert '"405:" "GET, POST, PATCH, DELETE, OPTIONS"' in text


def test_the_web_route_adds_the_apps_security_headers_after_the_common_ones(kong: dict, tmp_path: Path) -> None:
    text = render.render(KONG, tmp_path, {})
    web = text[text.index("location ~ ^/$ {"):]
    web = web[: web.index("}\n\n")]
    assert "add_header X-Request-ID $tf_request_id always;" in web  # nginx would drop the server's in this location
    assert "add_header X-Content-Type-Options \"nosniff\" always;" in web
    assert "frame-ancestors 'none'" in web and "connect-src 'self'" in web and "'unsafe-inline'" not in web
    tasks = text[text.index("# route tasks"):]
    assert "Content-Security-Policy" not in tasks[: tasks.index("}\n\n")]


def test_a_response_transformer_that_does_more_than_add_headers_is_refused(kong: dict) -> None:
    broken = copy.deepcopy(kong)
    web = next(service for service in broken["services"] if service["name"] == "web")
    web["routes"][0]["plugins"][0]["config"]["remove"] = {"headers": ["Server"]}
    with pytest.raises(render.KongConfigError, match="add.headers"):
        render.build_model(broken, {})


def test_the_notification_stream_is_passed_on_unbuffered_and_first(kong: dict) -> None:
    locations = render.build_model(kong, {})["locations"]
    stream = next(location for location in locations if location.route == "notifications-stream")
    inbox = next(location for location in locations if location.route == "notifications")
    assert not stream.buffered and inbox.buffered
    assert locations.index(stream) < locations.index(inbox)
