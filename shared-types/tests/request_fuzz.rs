//! Every dashboard request parser meets random and malformed bodies: it never panics, refuses with
//! a clear error, and its error never repeats a secret the body carried (SPEC §9).

use proptest::prelude::*;
use serde_json::{json, Value};
use shared_types::http_api::{apply_settings_update, check_same_origin, parse_add_key, parse_admin_key, parse_match_key, parse_workspace_name, Settings};

const SECRET: &str = "sk-ant-api03-TESTfuzzabcdefghijklmnopqrstuvwxyz0001";
const ADMIN: &str = "sk-ant-admin01-TESTfuzzabcdefghijklmnop0001";

/// Random JSON, with the fake secrets and awkward values mixed in.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| json!(f)),
        Just(json!(u64::MAX)),
        Just(json!(SECRET)),
        Just(json!(ADMIN)),
        Just(json!(format!("{SECRET}\u{0}"))),
        Just(json!("x".repeat(100_000))),
        ".{0,40}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map(
                prop_oneof![
                    Just("secret".to_string()),
                    Just("name".to_string()),
                    Just("admin_key".to_string()),
                    Just("price_table".to_string()),
                    Just("admin_api_base_url".to_string()),
                    Just("key".to_string()),
                    Just("api_key_id".to_string()),
                    Just(SECRET.to_string()),
                    "[a-z_]{1,12}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn no_secret(text: &str) -> bool {
    !text.contains("TESTfuzz")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn parsers_refuse_clearly_and_never_repeat_a_secret(body in any_json()) {
        let settings = Settings::default();
        if let Err(e) = parse_add_key(&body, &settings) {
            prop_assert!(no_secret(&e.to_string()), "{e}");
        }
        if let Err(e) = apply_settings_update(&settings, &body) {
            prop_assert!(no_secret(&e.to_string()), "{e}");
        }
        if let Err(e) = parse_admin_key(&body) {
            prop_assert!(no_secret(&e.to_string()), "{e}");
        }
        if let Err(e) = parse_match_key(&body) {
            prop_assert!(no_secret(&e.to_string()), "{e}");
        }
        if let Err(e) = parse_workspace_name(&body) {
            prop_assert!(no_secret(&e.to_string()), "{e}");
        }
    }

    #[test]
    fn the_same_origin_check_never_panics(ct in proptest::option::of(".{0,60}"), origin in proptest::option::of(".{0,80}"), host in proptest::option::of(".{0,60}"), site in proptest::option::of(".{0,20}")) {
        let _ = check_same_origin(ct.as_deref(), origin.as_deref(), &[host.as_deref()], site.as_deref());
    }
}

#[test]
fn a_valid_body_still_passes() {
    let settings = Settings::default();
    let key = parse_add_key(&json!({"secret": SECRET, "name": "fuzz"}), &settings).unwrap();
    assert_eq!(key.name, "fuzz");
    assert!(apply_settings_update(&settings, &json!({"default_budget_usd": "7"})).is_ok());
}
