//! Label and field selector parsing, canonical printing and matching.
#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers of a test binary may panic

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;
use karpenter_apimachinery::selector::{FieldSelector, LabelSelector};

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// One label selector case: the input, then what it must print as and match, or fail with.
struct Case {
    input: &'static str,
    canonical: Option<&'static str>,
    matching: Vec<BTreeMap<String, String>>,
    not_matching: Vec<BTreeMap<String, String>>,
    error: Option<&'static str>,
}

fn case(input: &'static str) -> Case {
    Case {
        input,
        canonical: None,
        matching: vec![],
        not_matching: vec![],
        error: None,
    }
}

impl Case {
    fn prints(mut self, canonical: &'static str) -> Self {
        self.canonical = Some(canonical);
        self
    }
    fn matches(mut self, pairs: &[(&str, &str)]) -> Self {
        self.matching.push(labels(pairs));
        self
    }
    fn rejects(mut self, pairs: &[(&str, &str)]) -> Self {
        self.not_matching.push(labels(pairs));
        self
    }
    fn fails(mut self, fragment: &'static str) -> Self {
        self.error = Some(fragment);
        self
    }
}

fn check(c: Case) {
    let parsed = LabelSelector::parse(c.input);
    if let Some(fragment) = c.error {
        let err = parsed.expect_err(&format!("{:?} must fail", c.input));
        assert!(
            err.to_string().contains(fragment),
            "{:?}: error {:?} lacks {:?}",
            c.input,
            err.to_string(),
            fragment
        );
        return;
    }
    let selector = parsed.unwrap_or_else(|e| panic!("{:?} must parse: {e}", c.input));
    if let Some(canonical) = c.canonical {
        assert_eq!(
            selector.to_string(),
            canonical,
            "canonical form of {:?}",
            c.input
        );
        let reparsed = LabelSelector::parse(canonical).expect("canonical form parses");
        assert_eq!(reparsed, selector, "round trip of {:?}", c.input);
    }
    for l in &c.matching {
        assert!(selector.matches(l), "{:?} must match {l:?}", c.input);
    }
    for l in &c.not_matching {
        assert!(!selector.matches(l), "{:?} must not match {l:?}", c.input);
    }
}

#[test]
fn label_selector_string_syntax() {
    let cases = vec![
        case("").prints("").matches(&[]).matches(&[("a", "b")]),
        case("   ").prints("").matches(&[("x", "y")]),
        case("a=b")
            .prints("a=b")
            .matches(&[("a", "b")])
            .rejects(&[("a", "c")])
            .rejects(&[]),
        case("a==b")
            .prints("a==b")
            .matches(&[("a", "b"), ("c", "d")])
            .rejects(&[("a", "bb")]),
        case("a!=b")
            .prints("a!=b")
            .matches(&[])
            .matches(&[("a", "c")])
            .rejects(&[("a", "b")]),
        case("a")
            .prints("a")
            .matches(&[("a", "")])
            .rejects(&[("b", "a")]),
        case("!a")
            .prints("!a")
            .matches(&[("b", "x")])
            .rejects(&[("a", "x")]),
        case("! a").prints("!a").rejects(&[("a", "")]),
        case("a in (x,y)")
            .prints("a in (x,y)")
            .matches(&[("a", "y")])
            .rejects(&[("a", "z")])
            .rejects(&[]),
        case("a in (y, x, y)").prints("a in (x,y)"),
        case("a notin (x)")
            .prints("a notin (x)")
            .matches(&[])
            .matches(&[("a", "y")])
            .rejects(&[("a", "x")]),
        case("b=c,a=d")
            .prints("a=d,b=c")
            .matches(&[("a", "d"), ("b", "c")])
            .rejects(&[("a", "d")]),
        case("  a  =  b ,  c  !=  d ")
            .prints("a=b,c!=d")
            .matches(&[("a", "b")]),
        case("a=")
            .prints("a=")
            .matches(&[("a", "")])
            .rejects(&[])
            .rejects(&[("a", "x")]),
        case("a in ()").prints("a in ()").matches(&[("a", "")]),
        case("a in (x,)")
            .prints("a in (,x)")
            .matches(&[("a", "")])
            .matches(&[("a", "x")]),
        case("x>3")
            .prints("x>3")
            .matches(&[("x", "4")])
            .rejects(&[("x", "3")])
            .rejects(&[("x", "abc")])
            .rejects(&[]),
        case("x<3")
            .prints("x<3")
            .matches(&[("x", "-1")])
            .rejects(&[("x", "3")]),
        case("karpenter.sh/nodepool=default")
            .prints("karpenter.sh/nodepool=default")
            .matches(&[("karpenter.sh/nodepool", "default")]),
        case("node.kubernetes.io/instance-type in (m5.large, c5.xlarge)")
            .prints("node.kubernetes.io/instance-type in (c5.xlarge,m5.large)")
            .matches(&[("node.kubernetes.io/instance-type", "m5.large")]),
        case("!karpenter.sh/nodepool,app=web")
            .prints("app=web,!karpenter.sh/nodepool")
            .matches(&[("app", "web")])
            .rejects(&[("app", "web"), ("karpenter.sh/nodepool", "x")]),
        case("in=notin")
            .prints("in=notin")
            .matches(&[("in", "notin")]),
        case("a=b,a!=c").prints("a=b,a!=c").matches(&[("a", "b")]),
        case("a in (in,notin)")
            .prints("a in (in,notin)")
            .matches(&[("a", "notin")]),
        // Errors.
        case("a=b,").fails("identifier after ','"),
        case(",a").fails("expected: !, identifier"),
        case("a b").fails("found 'b', expected: '='"),
        case("a=(b)").fails("found '('"),
        case("a in x").fails("expected: '('"),
        case("a in (x").fails("found 'end of string'"),
        case("a in (x y)").fails("expected: ',' or ')'"),
        case("a=b=c").fails("expected: ',' or 'end of string'"),
        case("!a=b").fails("expected: ',' or 'end of string'"),
        case("x>abc").fails("must be an integer"),
        case("a/b/c=d").fails("invalid label key"),
        case("Foo.com/a=b").fails("prefix part"),
        case("-a=b").fails("name part must consist"),
        case("a=-b").fails("invalid label value"),
        case("a=b c").fails("expected: ',' or 'end of string'"),
        case("/a=b").fails("prefix part must be non-empty"),
        case("a/=b").fails("name part must be non-empty"),
        case(&*Box::leak(
            format!("{}=b", "k".repeat(64)).into_boxed_str(),
        ))
        .fails("no more than 63"),
        case(&*Box::leak(
            format!("a={}", "v".repeat(64)).into_boxed_str(),
        ))
        .fails("no more than 63"),
        case("a==").prints("a==").matches(&[("a", "")]),
        case("a<").fails("integer"),
        case("(a)").fails("expected: !, identifier"),
    ];
    assert!(cases.len() >= 30);
    for c in cases {
        check(c);
    }
}

fn expr(key: &str, operator: &str, values: &[&str]) -> metav1::LabelSelectorRequirement {
    metav1::LabelSelectorRequirement {
        key: key.to_string(),
        operator: operator.to_string(),
        values: if values.is_empty() {
            None
        } else {
            Some(values.iter().map(|v| v.to_string()).collect())
        },
    }
}

fn structured(
    match_labels: &[(&str, &str)],
    exprs: Vec<metav1::LabelSelectorRequirement>,
) -> metav1::LabelSelector {
    metav1::LabelSelector {
        match_labels: if match_labels.is_empty() {
            None
        } else {
            Some(labels(match_labels))
        },
        match_expressions: if exprs.is_empty() { None } else { Some(exprs) },
    }
}

#[test]
fn label_selector_from_structured() {
    struct Structured {
        selector: metav1::LabelSelector,
        expect: Result<&'static str, &'static str>,
        matching: Vec<BTreeMap<String, String>>,
        not_matching: Vec<BTreeMap<String, String>>,
    }
    let check = |c: Structured| match (LabelSelector::from_k8s(&c.selector), c.expect) {
        (Ok(s), Ok(canonical)) => {
            assert_eq!(s.to_string(), canonical);
            for l in &c.matching {
                assert!(s.matches(l), "{canonical} must match {l:?}");
            }
            for l in &c.not_matching {
                assert!(!s.matches(l), "{canonical} must not match {l:?}");
            }
        }
        (Err(e), Err(fragment)) => assert!(e.to_string().contains(fragment), "{e}"),
        (got, want) => panic!("got {got:?}, want {want:?}"),
    };
    check(Structured {
        selector: structured(&[], vec![]),
        expect: Ok(""),
        matching: vec![labels(&[]), labels(&[("a", "b")])],
        not_matching: vec![],
    });
    check(Structured {
        selector: structured(&[("app", "web"), ("tier", "fe")], vec![]),
        expect: Ok("app=web,tier=fe"),
        matching: vec![labels(&[("app", "web"), ("tier", "fe"), ("x", "y")])],
        not_matching: vec![labels(&[("app", "web")])],
    });
    check(Structured {
        selector: structured(
            &[("app", "web")],
            vec![
                expr("zone", "In", &["b", "a"]),
                expr("spot", "DoesNotExist", &[]),
                expr("arch", "NotIn", &["arm64"]),
                expr("os", "Exists", &[]),
            ],
        ),
        expect: Ok("app=web,arch notin (arm64),os,!spot,zone in (a,b)"),
        matching: vec![labels(&[("app", "web"), ("zone", "a"), ("os", "linux")])],
        not_matching: vec![
            labels(&[("app", "web"), ("zone", "a"), ("os", "linux"), ("spot", "")]),
            labels(&[("app", "web"), ("zone", "c"), ("os", "linux")]),
            labels(&[
                ("app", "web"),
                ("zone", "a"),
                ("os", "linux"),
                ("arch", "arm64"),
            ]),
            labels(&[("app", "web"), ("zone", "a")]),
        ],
    });
    check(Structured {
        selector: structured(&[], vec![expr("a", "In", &[])]),
        expect: Err("values set can't be empty"),
        matching: vec![],
        not_matching: vec![],
    });
    check(Structured {
        selector: structured(&[], vec![expr("a", "Exists", &["x"])]),
        expect: Err("values set must be empty"),
        matching: vec![],
        not_matching: vec![],
    });
    check(Structured {
        selector: structured(&[], vec![expr("a", "Gt", &["1"])]),
        expect: Err("\"Gt\" is not a valid label selector operator"),
        matching: vec![],
        not_matching: vec![],
    });
    check(Structured {
        selector: structured(&[("bad key", "x")], vec![]),
        expect: Err("invalid label key"),
        matching: vec![],
        not_matching: vec![],
    });
    check(Structured {
        selector: structured(&[("a", "bad value")], vec![]),
        expect: Err("invalid label value"),
        matching: vec![],
        not_matching: vec![],
    });
}

#[test]
fn nothing_and_everything() {
    assert!(!LabelSelector::nothing().matches(&labels(&[])));
    assert!(!LabelSelector::nothing().is_everything());
    assert!(LabelSelector::everything().matches(&labels(&[("a", "b")])));
    assert!(
        LabelSelector::parse("")
            .expect("empty parses")
            .is_everything()
    );
}

/// One field selector case.
struct FieldCase {
    input: &'static str,
    expect: Result<&'static str, &'static str>,
    fields: Vec<&'static str>,
    objects: Vec<(Vec<(&'static str, &'static str)>, bool)>,
}

fn field(input: &'static str, expect: Result<&'static str, &'static str>) -> FieldCase {
    FieldCase {
        input,
        expect,
        fields: vec![],
        objects: vec![],
    }
}

impl FieldCase {
    fn reads(mut self, fields: &[&'static str]) -> Self {
        self.fields = fields.to_vec();
        self
    }
    fn on(mut self, values: &[(&'static str, &'static str)], matches: bool) -> Self {
        self.objects.push((values.to_vec(), matches));
        self
    }
}

fn check_field(c: FieldCase) {
    match (FieldSelector::parse(c.input), c.expect) {
        (Ok(s), Ok(canonical)) => {
            assert_eq!(s.to_string(), canonical, "canonical form of {:?}", c.input);
            assert_eq!(FieldSelector::parse(canonical).expect("reparse"), s);
            if !c.fields.is_empty() {
                assert_eq!(s.fields(), c.fields, "fields of {:?}", c.input);
            }
            for (values, want) in &c.objects {
                let got = s.matches(|f| {
                    values
                        .iter()
                        .find(|(k, _)| *k == f)
                        .map(|(_, v)| v.to_string())
                });
                assert_eq!(got, *want, "{:?} on {values:?}", c.input);
            }
        }
        (Err(e), Err(fragment)) => {
            assert!(e.to_string().contains(fragment), "{:?}: {e}", c.input)
        }
        (got, want) => panic!("{:?}: got {got:?}, want {want:?}", c.input),
    }
}

#[test]
fn field_selector_syntax_and_matching() {
    let cases = vec![
        field("", Ok("")).on(&[], true),
        field("metadata.name=foo", Ok("metadata.name=foo"))
            .reads(&["metadata.name"])
            .on(&[("metadata.name", "foo")], true)
            .on(&[("metadata.name", "bar")], false),
        field("spec.nodeName==", Ok("spec.nodeName="))
            .on(&[], true)
            .on(&[("spec.nodeName", "n1")], false),
        field("spec.nodeName!=", Ok("spec.nodeName!="))
            .on(&[("spec.nodeName", "n1")], true)
            .on(&[], false),
        field(
            "status.phase!=Running,spec.nodeName=n1",
            Ok("spec.nodeName=n1,status.phase!=Running"),
        )
        .reads(&["spec.nodeName", "status.phase"])
        .on(
            &[("spec.nodeName", "n1"), ("status.phase", "Pending")],
            true,
        )
        .on(
            &[("spec.nodeName", "n1"), ("status.phase", "Running")],
            false,
        ),
        field(r"metadata.name=a\,b\=c\\d", Ok(r"metadata.name=a\,b\=c\\d"))
            .on(&[("metadata.name", r"a,b=c\d")], true),
        field(r"a=b\,c,d=e", Ok(r"a=b\,c,d=e")).reads(&["a", "d"]),
        field("a=b,a=c", Ok("a=b,a=c"))
            .reads(&["a"])
            .on(&[("a", "b")], false),
        field("foo", Err("can't understand 'foo'")),
        field("a=b=c", Err("unescaped character in value: =")),
        field(r"a=b\x", Err(r"invalid escape sequence: \x")),
        field(r"a=b\", Err("invalid escape sequence")),
        field("a=b,,c=d", Ok("a=b,c=d")),
    ];
    for c in cases {
        check_field(c);
    }
}

#[test]
fn field_selector_exact_match() {
    let s = FieldSelector::parse("metadata.name=x,spec.nodeName!=y").expect("parses");
    assert_eq!(s.exact_match("metadata.name"), Some("x"));
    assert_eq!(s.exact_match("spec.nodeName"), None);
    assert!(FieldSelector::everything().is_everything());
}
