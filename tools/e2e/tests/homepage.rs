//! The app's tile on the node's homepage (SPEC §7): the issuer adds itself with an icon and a
//! widget at every start, and the widget, rendered as the homepage renders it (a same-origin
//! iframe from its HTML), shows the pool's state from the dashboard API. Requires `cargo xtask
//! build` and Chromium (`cargo xtask test` sees to both).

use e2e::*;
use serde_json::{json, Value};

fn tile(env: &Env) -> Option<Value> {
    let apps = get(&format!("{}/devnode/homepage", env.control));
    apps["apps"].as_array()?.iter().find(|a| a["id"] == ISSUER).cloned()
}

#[test]
fn the_issuer_adds_a_tile_whose_widget_shows_the_pool() {
    let mut env = Env::start("homepage", "small.json", &["alice.os".to_string()]);
    env.eventually("the tile added", || tile(&env).is_some());
    let app = tile(&env).unwrap();
    assert_eq!(app["label"], "API Key Manager");
    assert_eq!(app["path"], format!("/{ISSUER}/"));
    assert_eq!((&app["process"], &app["package_name"], &app["publisher"]), (&json!("key-issuer"), &json!("anthropic-api-key-manager"), &json!("keymanager.os")));
    let icon = app["base64_icon"].as_str().expect("an icon");
    assert!(icon.starts_with("data:image/svg+xml;base64,PHN2Zy"), "the icon is an SVG data URL: {}", &icon[..40.min(icon.len())]);
    let widget = app["widget"].as_str().expect("a widget");
    assert!(widget.contains(&format!("\"/{ISSUER}/api\"")), "the widget reads this process's API");

    // Empty pool: the widget warns that no key can be issued; then a key is added and it counts it.
    // The icon is shown as the homepage shows it (`<img src>`, the script checks it loads).
    let run_widget = |expect: &str| env.run_browser_script("homepage.mjs", &[("WIDGET_HTML", widget), ("ICON", icon), ("EXPECT", expect)], &[secret(1)]);
    run_widget("empty");
    env.configure_admin_api();
    let r = env.add_key(json!({"secret": secret(1), "name": "k1", "node_cap": null}));
    assert!(r.get("Ok").is_some(), "{r}");
    run_widget("one-key");
    // Retiring the only key empties the pool: the open alert shows on the widget too.
    let key = r["Ok"]["id"].as_u64().unwrap();
    assert!(env.api(json!({"RetireKey": key})).get("Ok").is_some());
    let open = || env.api(json!({"ListAlerts": {"state": "open"}}))["Ok"]["open"].as_array().map_or(0, Vec::len);
    env.eventually("the pool-empty alert raised", || open() > 0);
    run_widget("pool-empty-alert");

    // The homepage forgets tiles at each boot: the issuer adds it again when it starts.
    env.restart_devnode();
    env.eventually("the tile added again", || tile(&env).is_some());
}
