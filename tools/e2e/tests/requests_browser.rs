//! The issuance policy's screens in a real browser: runs `ui/browser-tests/requests.mjs`
//! (playwright-core driving Debian's Chromium) against devnode with the built package and
//! fake-admin-api: the policy card in Settings, the Requests view (approve, deny, decide in
//! advance), and the p2p answers that follow. Requires `cargo xtask build` and Chromium at
//! /usr/bin/chromium (`cargo xtask test` sees to both).

use e2e::*;
use serde_json::json;

#[test]
fn requests_view_in_chromium() {
    let peers = ["bob.os", "carol.os", "spam.os", "ann.team"].map(str::to_string);
    let env = Env::start("requests-browser", "truth.json", &peers);
    env.configure_admin_api();
    let r = env.add_key(json!({"secret": secret(1), "name": "k1", "node_cap": null}));
    assert!(r.get("Ok").is_some(), "{r}");
    env.run_browser_script("requests.mjs", &[("TEST_API_KEY", &secret(1))], &[secret(1)]);
}
