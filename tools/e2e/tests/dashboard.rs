//! The dashboard in a real browser: runs `ui/browser-tests/dashboard.mjs` (playwright-core driving
//! Debian's Chromium) against devnode with the built package and fake-admin-api. Requires
//! `cargo xtask build` and Chromium at /usr/bin/chromium (`cargo xtask test` sees to both).

use std::process::Command;

use e2e::*;

#[test]
fn dashboard_in_chromium() {
    let env = Env::start("dashboard", "small.json", &["alice.os".to_string(), "bob.os".to_string()]);
    let screenshots = root().join("target").join("screenshots");
    let status = Command::new("node")
        .arg(root().join("ui/browser-tests/dashboard.mjs"))
        .current_dir(root().join("ui"))
        .env("DASHBOARD_URL", format!("{}/", env.http))
        .env("NODE_PASSWORD", PASSWORD)
        .env("DEVNODE_CONTROL", &env.control)
        .env("FAKE_ADMIN_API", &env.fake_url)
        .env("TEST_API_KEY", secret(1))
        .env("TEST_ADMIN_KEY", ADMIN_KEY)
        .env("SCREENSHOT_DIR", &screenshots)
        .status()
        .expect("running node (ui/ dependencies are installed by cargo xtask build)");
    assert!(status.success(), "the browser test failed (see its output above)");
    // What the app's processes logged during the whole session holds no secret.
    let logs = env.logs() + &env.process_output();
    assert!(!logs.contains(&secret(1)), "a full API key was logged");
    assert!(!logs.contains(ADMIN_KEY), "the admin key was logged");
}
