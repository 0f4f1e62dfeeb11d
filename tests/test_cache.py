import json

import pytest
import torch

from lesionlib.cache import RunCache, canonical, spec_key


def test_key_depends_on_content_not_order():
    a = {"x": 1, "y": {"b": 2, "a": 1}}
    b = {"y": {"a": 1, "b": 2}, "x": 1}
    assert spec_key(a) == spec_key(b) and canonical(a) == canonical(b)
    assert spec_key(a) != spec_key({"x": 2, "y": {"b": 2, "a": 1}})


def test_put_then_get_with_weights(cache_dir):
    c = RunCache(cache_dir)
    spec = {"role": "source", "n": 3}
    assert not c.has(spec)
    c.put(spec, {"recall": 0.5}, {"w": torch.ones(2)})
    assert c.has(spec) and c.result(spec) == {"recall": 0.5}
    assert torch.equal(c.state_dict(spec)["w"], torch.ones(2))
    assert json.loads((c.path(spec) / "spec.json").read_text()) == spec
    assert not [p for p in c.path(spec).parent.iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_incomplete_entry_is_not_trusted_and_is_replaced(cache_dir):
    c = RunCache(cache_dir)
    spec = {"role": "target", "n": 1}
    c.path(spec).mkdir(parents=True)
    (c.path(spec) / "spec.json").write_text("{}")  # a crash before result.json
    assert not c.has(spec)
    with pytest.raises(KeyError):
        c.result(spec)
    c.put(spec, {"ok": True})
    assert c.result(spec) == {"ok": True}


def test_second_writer_of_a_finished_spec_keeps_the_first(cache_dir):
    c = RunCache(cache_dir)
    spec = {"n": 5}
    c.put(spec, {"first": True})
    c.put(spec, {"first": False})
    assert c.result(spec) == {"first": True}
