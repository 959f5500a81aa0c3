"""Shared by the gen_*_fixtures.py scripts: seeded samplers over one torch.Generator (the draw order
is the caller's, so a fixture depends only on its seed and its cases) and the writer of Lua table
literals the fixtures are made of (floats as %.9g and always floats, non-finite values refused)."""
import math
import os

import torch


class Sampler:
    """randn / rand / spread / randint drawing from one generator seeded with `seed`."""

    def __init__(self, seed):
        self.gen = torch.Generator().manual_seed(seed)

    def randn(self, *shape):
        return torch.randn(*shape, generator=self.gen)

    def rand(self, lo, hi, *shape):
        return lo + (hi - lo) * torch.rand(*shape, generator=self.gen)

    def randint(self, lo, hi, *shape):
        return torch.randint(lo, hi, shape, generator=self.gen)

    def spread(self, lo, hi, *shape):
        """Distinct values in [lo, hi] in a shuffled order: max/min and kinks stay unambiguous."""
        n = math.prod(shape)
        v = torch.linspace(lo, hi, n)[torch.randperm(n, generator=self.gen)]
        return v.reshape(*shape)


def fixture_path(name):
    """tests/fixtures/<name> in this checkout, wherever the script is run from."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return os.path.join(root, "tests", "fixtures", name)


def nested(t):
    """Nested lists of numbers (a bare number for 0-d)."""
    return t.detach().tolist()


def lua_string(s):
    out = s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return '"%s"' % out


def lua_value(v, indent=0, none="false"):
    """v (bool, None, float, int, str, list, dict with identifier keys) as a Lua literal; nested
    tables indent two spaces a level from `indent`; None is written as `none`."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return none
    if isinstance(v, float):
        if math.isnan(v) or math.isinf(v):
            raise ValueError("non-finite value in fixture")
        text = "%.9g" % v
        # keep floats floats in Lua (6 would read as an integer, 6.0 as a float)
        return text if any(c in text for c in ".en") else text + ".0"
    if isinstance(v, int):
        return "%d" % v
    if isinstance(v, str):
        return lua_string(v)
    if isinstance(v, list):
        if all(not isinstance(x, (list, dict)) for x in v):
            return "{" + ", ".join(lua_value(x, indent, none) for x in v) + "}"
        pad = "  " * (indent + 1)
        inner = (",\n" + pad).join(lua_value(x, indent + 1, none) for x in v)
        return "{\n" + pad + inner + "}"
    if isinstance(v, dict):
        if not v:
            return "{}"
        pad = "  " * (indent + 1)
        items = ["%s = %s" % (k, lua_value(x, indent + 1, none)) for k, x in v.items()]
        return "{\n" + pad + (",\n" + pad).join(items) + "\n" + "  " * indent + "}"
    raise TypeError(type(v))
