"""Tests of check-imports.py on small made-up crates: it must fail on a
circle and on a breached rule, and must not be fooled by comments, strings,
test modules, grouped `use` lines or `super::` paths. Run by `make lint`."""

import importlib.util
import os
import tempfile
import textwrap
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("check_imports", os.path.join(HERE, "check-imports.py"))
ci = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ci)


class CheckImports(unittest.TestCase):
    def crate(self, files, rules=""):
        self.dir = tempfile.TemporaryDirectory()
        src = os.path.join(self.dir.name, "src")
        for name, text in files.items():
            path = os.path.join(src, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w") as f:
                f.write(textwrap.dedent(text))
        rules_path = os.path.join(self.dir.name, "rules.txt")
        with open(rules_path, "w") as f:
            f.write(textwrap.dedent(rules))
        self.addCleanup(self.dir.cleanup)
        return ci.check(src, rules_path)

    def test_a_clean_crate_passes(self):
        problems = self.crate(
            {
                "lib.rs": "pub mod a; pub mod b;",
                "a.rs": "use crate::b::Thing;",
                "b.rs": "pub struct Thing;",
            },
            "b !-> a  # b knows nothing of a\n",
        )
        self.assertEqual(problems, [])

    def test_a_circle_fails_and_names_both_sides(self):
        problems = self.crate(
            {
                "lib.rs": "pub mod a; pub mod b;",
                "a.rs": "use crate::b::Thing;",
                "b/mod.rs": "mod inner;",
                "b/inner.rs": "fn f() { crate::a::g(); }",
            }
        )
        self.assertEqual(len(problems), 1)
        self.assertIn("import circle between a, b", problems[0])
        self.assertIn("b -> a", problems[0])
        self.assertIn("inner.rs:1", problems[0])

    def test_a_breached_absence_fails_with_file_line_and_reason(self):
        problems = self.crate(
            {
                "lib.rs": "pub mod config; pub mod source;",
                "config.rs": "\n\nuse crate::{packet, source::v4l2::Request};",
                "source.rs": "",
            },
            "config !-> source  # config knows nothing of sources\n",
        )
        self.assertEqual(len(problems), 1)
        self.assertIn("config.rs:3", problems[0])
        self.assertIn("config knows nothing of sources", problems[0])

    def test_a_submodule_rule_and_super_paths(self):
        problems = self.crate(
            {
                "lib.rs": "pub mod web;",
                "web/mod.rs": "mod server; mod routes;",
                "web/server.rs": "use super::routes::handle;",
                "web/routes.rs": "use super::server::Conn;",
            },
            "web::server !-> web::routes  # the server knows nothing of routes\n",
        )
        self.assertEqual(len(problems), 1)
        self.assertIn("web::server refers to web::routes", problems[0])

    def test_comments_strings_and_tests_do_not_count(self):
        problems = self.crate(
            {
                "lib.rs": "pub mod a; pub mod b;",
                "a.rs": "use crate::b::Thing;",
                "b/mod.rs": """\
                    //! Unlike [`crate::a`], ...
                    /* crate::a::x */
                    const S: &str = "crate::a::y";
                    const R: &str = r#"crate::a::z"#;
                    fn f<'x>(_: &'x str) -> char { '"' }
                    #[cfg(test)]
                    mod tests {
                        use crate::a::helper;
                    }
                    #[cfg(test)]
                    mod more;
                    """,
                "b/more.rs": "use crate::a::other;",
            },
            "b !-> a  # b knows nothing of a\n",
        )
        self.assertEqual(problems, [])

    def test_several_modules_on_the_left(self):
        problems = self.crate(
            {
                "lib.rs": "pub mod a; pub mod b; pub mod c; pub mod top;",
                "a.rs": "use crate::top::X;",
                "b.rs": "use crate::c::Y;",
                "c.rs": "",
                "top.rs": "use crate::a::Z;",
            },
            "a b c !-> top  # only the top knows the top\n",
        )
        self.assertEqual(len(problems), 2, problems)
        self.assertTrue(any("a refers to top" in p for p in problems))
        self.assertTrue(any("import circle between a, top" in p for p in problems))

    def test_a_leaf_and_a_private_module(self):
        problems = self.crate(
            {
                "lib.rs": "pub mod codec; pub mod hw; pub mod decode;",
                "codec.rs": "use crate::hw::X;",
                "hw/mod.rs": "pub mod mpp_sys;",
                "hw/mpp_sys.rs": "",
                "decode.rs": "use crate::hw::mpp_sys::mpp_create;",
            },
            "codec !-> *  # a leaf\n* !-> hw::mpp_sys  # only hw calls the FFI\n",
        )
        self.assertEqual(len(problems), 2, problems)
        self.assertTrue(any("codec refers to hw" in p for p in problems))
        self.assertTrue(any("decode refers to hw::mpp_sys" in p for p in problems))


if __name__ == "__main__":
    unittest.main()
