"""The secret prefilter only ever clears files detect-secrets would pass; planted secrets are caught."""

import sysconfig
from pathlib import Path

import pytest

from codetailor.config import RetrievalConfig
from retrieval.secrets_scan import has_secret, may_hold_secret
from retrieval.selection import Selection, select_files

PLANTED = {
    "aws.py": 'AWS_SECRET_ACCESS_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"\n',
    "aws_id.py": 'key_id = "AKIAIOSFODNN7EXAMPLE"\n',
    "github.py": 'TOKEN = "ghp_1234567890abcdefghijABCDEFGHIJ123456"\n',
    "password.py": 'db_password = "correct-horse-battery-staple-42"\n',
    "pem.py": 'KEY = """-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----"""\n',
    "entropy_b64.py": 'blob = "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdoaWprbG1ub3A="\n',
    "entropy_hex.go": 'package x\n\nvar k = "8d969eef6ecad3c29a3a629280e686cf0c3f5d5a86aff3ca"\n',
    "slack.js": 'const hook = "xoxb-123456789012-1234567890123-abcdefghijklmnopqrstuvwx";\n',
    "stripe.ts": 'export const key = "sk_live_4eC39HqLyjWDarjtT1zdp7dc";\n',
    "basic_auth.py": 'URL = "https://admin:hunter2secret@db.example.com/prod"\n',
    "jwt.java": 'class T { String t = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"; }\n',
    "config.yaml": "database:\n  password: s3cr3t-Pa55w0rd-v4lue\n",
    "password.c": 'static const char *db_password = "correct-horse-battery";\n',
    "secret.go": 'package x\n\nconst apiKey := "correct-horse-battery"\n',
}
QUOTED_ONLY_WHEN_TRANSFORMED = {   # an unquoted value: only the config transformers' quoting exposes it
    "values.h": "[section]\napi = Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdoaWprbG1ub3A=\n",
    "settings.ini": "[db]\nvalue = Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdoaWprbG1ub3A=\n",
    "values.yaml": "a:\n  b: Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdoaWprbG1ub3A=\n",
}
UNQUOTED = {   # no quotes (no entropy check), no keyword: only each service's own pattern can see them
    "artifactory.py": "x = AKCp5budTFpbypBqQbGJPz3pGCi28pPivfWczqjfYb9drAmd9LbRZbj6UpKFxJXA8ksWGc9fM\n",
    "artifactory_ap.py": "x = AP6xxxxxxxxxx\n",
    "mailchimp.py": "k = 343ea45721923ed956e2b38c31db76aa-us30\n",
    "stripe_rk.py": "k = rk_live_4eC39HqLyjWDarjtT1zdp7dc\n",
    "slack_hook.py": "u = https://hooks.slack.com/services/Txxxxxxxx/Bxxxxxxxx/xxxxxxxxxxxxxxxxxxxxxxxx\n",
    "softlayer.py": "u = https://api.softlayer.com/soap/v3/" + "a" * 64 + "\n",
    "cloudant.py": "u = https://user:" + "a" * 24 + "@acct.cloudant.com\n",
    "xox_upper.py": "k = XOXP-123-456-abc\n",
}
CLEAN = "def add(a, b):\n    \"\"\"Sum two numbers.\"\"\"\n    return a + b\n"


@pytest.mark.parametrize("name", sorted(PLANTED) + sorted(QUOTED_ONLY_WHEN_TRANSFORMED) + sorted(UNQUOTED))
def test_every_planted_secret_is_flagged_and_caught(tmp_path, name):
    text = (PLANTED | QUOTED_ONLY_WHEN_TRANSFORMED | UNQUOTED)[name]
    p = tmp_path / name
    p.write_text(text)
    assert may_hold_secret(name, text)
    assert has_secret(p), f"detect-secrets itself misses {name}: the plant is wrong"


def test_clean_code_skips_the_full_scan():
    assert not may_hold_secret("add.py", CLEAN)


MENTIONS = {   # deny-listed words that are not an assignment of a quoted value: no full scan needed
    "auth.py": "def check_password(user, password):\n    return verify(user.secret, password)\n",
    "crypto.c": "/* the secret key is derived below */\nint derive_key(struct secret *s, u8 *passwd);\n",
}


@pytest.mark.parametrize("name", sorted(MENTIONS))
def test_a_mention_of_a_secret_word_is_cleared_without_the_full_scan(tmp_path, name):
    (tmp_path / name).write_text(MENTIONS[name])
    assert not has_secret(tmp_path / name)
    assert not may_hold_secret(name, MENTIONS[name])


def test_a_lone_carriage_return_on_a_keyword_line_goes_to_the_full_scan():
    assert may_hold_secret("a.py", "x = 1\rpassword_hint = 2\n")


def test_selection_drops_planted_secrets_with_the_worker_pool(tmp_path, monkeypatch):
    from retrieval import scan_pool

    for name, text in PLANTED.items():
        (tmp_path / name).write_text(text)
    for i in range(20):
        (tmp_path / f"clean_{i:02d}.py").write_text(CLEAN.replace("add", f"add_{i}"))
    pooled = []

    def every_file_to_the_processes(fn, context, items, **kw):
        pooled.append(kw["workers"])
        return scan_pool.ordered_map(fn, context, items, **(kw | {"min_items": 1, "batch": 3}))

    monkeypatch.setattr("retrieval.selection.ordered_map", every_file_to_the_processes)
    r = select_files(tmp_path, Selection(), RetrievalConfig(secret_scan_workers=2))
    assert pooled == [2]
    assert sorted(f.path for f in r.files) == [f"clean_{i:02d}.py" for i in range(20)]
    assert r.skipped["secret"] == len(PLANTED)


def _stdlib_sample(step: int = 40):
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.rglob("*.py") if "site-packages" not in p.parts)
    return files[::step]


def test_prefilter_never_clears_what_the_full_scan_flags():
    """On real code nobody here wrote (a sample of the standard library)."""
    missed, flagged = [], 0
    sample = _stdlib_sample()
    for p in sample:
        text = p.read_text(encoding="utf-8", errors="replace")
        maybe = may_hold_secret(p.name, text)
        flagged += maybe
        if not maybe and has_secret(p):
            missed.append(str(p))
    assert not missed
    assert flagged < len(sample)   # the prefilter does clear some real files


HEADER_READ_AS_CONFIG = "/* SPDX-License-Identifier: GPL-2.0 */\n#ifndef _FLAGS_H\n#define _FLAGS_H\nint width = 80;\n#endif\n"


def test_a_header_the_config_reader_accepts_is_cleared_when_its_values_are_plain(tmp_path):
    from retrieval.secrets_scan import _transformed

    assert _transformed("flags.h", HEADER_READ_AS_CONFIG), "the eager config reader should accept this header"
    (tmp_path / "flags.h").write_text(HEADER_READ_AS_CONFIG)
    assert not has_secret(tmp_path / "flags.h")
    assert not may_hold_secret("flags.h", HEADER_READ_AS_CONFIG)


def test_a_transformed_line_holding_a_break_goes_to_the_full_scan(monkeypatch):
    import detect_secrets.transformers as transformers

    monkeypatch.setattr(transformers, "get_transformed_file",
                        lambda f, use_eager_transformers=False: ['a = "x\ny"'] if use_eager_transformers else None)
    assert may_hold_secret("flags.h", HEADER_READ_AS_CONFIG)


