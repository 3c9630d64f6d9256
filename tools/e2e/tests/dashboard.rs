//! The dashboard in a real browser: runs `ui/browser-tests/dashboard.mjs` (playwright-core driving
//! Debian's Chromium) against devnode with the built package and fake-admin-api. Requires
//! `cargo xtask build` and Chromium at /usr/bin/chromium (`cargo xtask test` sees to both).

use e2e::*;

#[test]
fn dashboard_in_chromium() {
    let env = Env::start("dashboard", "small.json", &["alice.os".to_string(), "bob.os".to_string()]);
    // What the app's processes logged during the whole session holds no secret.
    env.run_browser_script("dashboard.mjs", &[("TEST_API_KEY", &secret(1))], &[secret(1)]);
}
