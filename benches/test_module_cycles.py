#!/usr/bin/env python3
"""Unit tests of scripts/module-cycles.py: lexing, `use` trees, path resolution, cycles.

Run: python3 -m unittest benches/test_module_cycles.py   (no root, no cargo; < 1 s)
The script is also run on netload's tree by crates/netload/tests/module_cycles.rs.
"""

import importlib.util
import tempfile
import unittest
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "module-cycles.py"
_spec = importlib.util.spec_from_file_location("module_cycles", SCRIPT)
mc = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mc)


def crate(files):
    """A crate folder in a temporary directory; the caller cleans it up."""
    tmp = tempfile.TemporaryDirectory()
    for rel, text in files.items():
        path = Path(tmp.name) / "src" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp


class Lexing(unittest.TestCase):
    def test_comments_strings_and_char_literals_hide_paths_and_braces(self):
        text = 'a // crate::x\n/* crate::y /* nested */ */ "crate::z {" r#"crate::w"# \'{\' \'a b'
        out = mc.strip_comments_and_strings(text)
        self.assertNotIn("crate::", out)
        self.assertNotIn("{", out)
        self.assertIn("'a b", out)  # a lifetime is no char literal
        self.assertEqual(out.count("\n"), text.count("\n"))

    def test_use_trees_expand(self):
        self.assertEqual(
            mc.expand_use_tree("crate::{a::X, b::{Y, z::Z as W}, self}"),
            ["crate::a::X", "crate::b::Y", "crate::b::z::Z", "crate::self"],
        )


class Resolution(unittest.TestCase):
    def test_super_and_self_resolve_against_the_scope(self):
        self.assertEqual(mc.Crate.resolve(["a", "b"], "super::c::X"), ["a", "c", "X"])
        self.assertEqual(mc.Crate.resolve(["a"], "self::d"), ["a", "d"])
        self.assertEqual(mc.Crate.resolve(["a", "b"], "crate::e"), ["e"])
        self.assertIsNone(mc.Crate.resolve([], "super::x"))

    def test_inline_test_module_belongs_to_its_file(self):
        with crate(
            {
                "lib.rs": "pub mod a;\npub mod b;\n",
                "a.rs": "pub struct A;\n#[cfg(test)]\nmod tests {\n    use super::*;\n    use crate::b::B;\n}\n",
                "b.rs": "pub struct B;\n",
            }
        ) as tmp:
            graph = mc.Crate(tmp).edges()
        self.assertEqual(set(graph["a"]), {"b"})
        self.assertEqual(graph["b"], {})

    def test_nodes_stop_at_direct_submodules(self):
        with crate({"lib.rs": "", "a/mod.rs": "", "a/b/mod.rs": "", "a/b/c.rs": ""}) as tmp:
            c = mc.Crate(tmp)
            self.assertEqual(c.node(["a", "b", "c", "X"]), "a::b")
            self.assertEqual(c.node(["a", "Y"]), "a")
            self.assertEqual(c.node(["Z"]), "crate")


class Cycles(unittest.TestCase):
    def test_each_cycle_once_from_its_smallest_node(self):
        graph = {"a": {"b": ""}, "b": {"a": "", "c": ""}, "c": {"a": ""}, "d": {"a": ""}}
        self.assertEqual(mc.cycles(graph), [("a", "b"), ("a", "b", "c")])

    def test_main_exits_1_and_names_the_cycle(self):
        with crate(
            {"lib.rs": "mod a;\nmod b;\n", "a.rs": "use crate::b::f;\n", "b.rs": "use crate::a::g;\n"}
        ) as tmp:
            self.assertEqual(mc.main(["module-cycles.py", tmp]), 1)
            self.assertEqual(mc.main(["module-cycles.py"]), 2)


if __name__ == "__main__":
    unittest.main()
