"""`switchboard templates apply | list | preview` through the real CLI against a served hub: the
repository's `templates/` folder goes in whole, again changes nothing, and a preview renders each
channel in the recipient's locale; a broken document is refused before anything is applied."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
from pathlib import Path

from tests.acceptance.test_cli import ROOT, free_port, hub_env, run  # noqa: F401

SHIPPED = sorted(p.stem for p in (ROOT / "templates").glob("*.yaml"))


def _put_recipient(env: dict[str, str], rid: str, profile: dict[str, str]) -> None:
    request = urllib.request.Request(  # noqa: S310 (the hub this test serves on 127.0.0.1)
        f"{env['SWITCHBOARD_URL']}/v1/recipients/{rid}",
        data=json.dumps(profile).encode(),
        method="PUT",
        headers={
            "Authorization": f"Bearer {env['SWITCHBOARD_API_KEY']}",
            "Content-Type": "application/json",
        },
    )
    with urllib.request.urlopen(request, timeout=30) as resp:  # noqa: S310
        assert resp.status == 201


def _rows(proc: subprocess.CompletedProcess[str]) -> list[dict[str, object]]:
    return [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]


def test_apply_the_shipped_templates_list_and_preview(
    hub_env: dict[str, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    env = hub_env
    assert len(SHIPPED) >= 7
    first = run(env, "templates", "apply", "templates")
    assert first.stdout.splitlines() == [f"applied {name} v1" for name in SHIPPED]
    again = run(env, "templates", "apply", "templates")
    assert again.stdout.splitlines() == [f"unchanged {name} v1" for name in SHIPPED]
    listed = run(env, "templates", "list", "--json")
    rows = json.loads(listed.stdout)
    assert [(r["name"], r["version"]) for r in rows] == [(n, 1) for n in SHIPPED]

    _put_recipient(env, "joana", {"name": "Joana", "locale": "en-GB"})
    event = tmp_path / "lead.json"
    event.write_text(json.dumps({"type": "lead.created", "data": {"name": "Joana"}}))
    shown = run(
        env, "templates", "preview", "lead_welcome", "--event", str(event), "--recipient", "joana"
    )
    assert "en-gb → en → pt-br" in shown.stdout
    assert "We got your message, Joana" in shown.stdout  # email: the English variant
    assert "Olá, Joana! Recebemos seu contato" in shown.stdout  # WhatsApp has only pt-BR
    as_json = run(env, "templates", "preview", "lead_welcome", "--event", str(event), "--json")
    answer = json.loads(as_json.stdout)
    assert {v["channel"]: v["locale"] for v in answer["variants"]} == {
        "whatsapp": "pt-BR",
        "email": "pt-BR",
    }
    missing = run(
        env,
        "templates",
        "preview",
        "lead_welcome",
        "--event",
        str(event),
        "--recipient",
        "nobody",
        ok=False,
    )
    assert missing.returncode == 1 and "no recipient" in missing.stderr


def test_a_broken_document_is_refused_before_any_is_applied(
    hub_env: dict[str, str],  # noqa: F811
    tmp_path: Path,
) -> None:
    env = hub_env
    folder = tmp_path / "templates"
    folder.mkdir()
    (folder / "a_ok.yaml").write_text(
        "name: a_ok\nvariants:\n  - {channel: inbox, locale: pt-BR, title: 'Oi {{ data.x }}'}\n"
    )
    (folder / "b_bad.yaml").write_text(
        "name: b_bad\nvariants:\n  - {channel: inbox, locale: pt-BR, title: '{{ data.x '}\n"
    )
    proc = run(env, "templates", "apply", str(folder), ok=False)
    assert proc.returncode == 2
    assert "b_bad.yaml" in proc.stderr and "/variants/0/title" in proc.stderr, proc.stderr
    assert json.loads(run(env, "templates", "list", "--json").stdout) == []


def test_quickstart_gives_the_demo_tenant_the_shipped_templates_once(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "SWITCHBOARD_DATABASE_URL": f"sqlite:///{tmp_path / 'qs.db'}",
        "SWITCHBOARD_PORT": str(free_port()),
    }
    first = run(env, "quickstart", "--no-serve")
    assert f"message templates given to demo: {', '.join(SHIPPED)}" in first.stderr
    second = run(env, "quickstart", "--no-serve")
    assert "message templates given" not in second.stderr  # it has them: nothing is re-applied


def test_quickstart_starts_without_a_broken_templates_folder(tmp_path: Path) -> None:
    broken = tmp_path / "templates"
    broken.mkdir()
    (broken / "x.yaml").write_text("name: x\nvariants: []\n")
    env = {
        **os.environ,
        "SWITCHBOARD_DATABASE_URL": f"sqlite:///{tmp_path / 'qs.db'}",
        "SWITCHBOARD_PORT": str(free_port()),
    }
    proc = run(env, "quickstart", "--no-serve", "--templates", str(broken))
    assert "/variants" in proc.stderr and f"skipped the templates in {broken}" in proc.stderr
    assert "message templates given" not in proc.stderr
