//! `cargo xtask <build|test>`: the project's build tasks.

mod component;
mod identity;
mod package;
mod paths;
mod run;
mod secrets;
mod test;
mod test_packages;
mod ui;
mod wit;

use std::process::ExitCode;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

const USAGE: &str = "usage: cargo xtask <command>

commands:
  run     build the package and run it in devnode: demo data and a scripted Admin API, or
          the real Admin API with --admin-key-file PATH (or ANTHROPIC_ADMIN_KEY)
          flags: --port N (8080), --password PW, --data-dir DIR, --fresh, --verbose (show the
          scripted Admin API's requests); SIGINT, SIGTERM or SIGHUP stops devnode and it
  build   build the package: target/wit, wasm components, UI, target/pkg/<package>.zip
          flags: --publisher NODE (keymanager.os), --issuer-process NAME (key-issuer) also
          write the package under that identity to target/pkg-identities/NODE/NAME/
          (README: Deploying as a drop-in); --relabel-only skips the build and relabels pkg/
  test    build the package, then run every test suite of the project
  test-packages
          build the test-only packages (tools/peer-client, tools/echo) into
          target/test-packages/, for `cargo test -p e2e --test two_nodes`; `test` and
          `bench` build them themselves
  bench   build the package, then print issuance, cost-series and dashboard figures
          (docs/benchmarks.md); `bench p2p` or `bench dashboard` runs one part, `bench scale`
          the dashboard calls, restart and memory at a million nodes alone, `bench breakdown`
          one issuance run against the floor and where a request's time goes (about a minute)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("build") => package::build_command(&args[1..]),
        Some("test") => test::run_all(),
        Some("test-packages") => test_packages::build().map(|_| ()),
        Some("run") => run::run(&args[1..]),
        Some("bench") => test::bench(&args[1..]),
        Some("-h" | "--help" | "help") | None => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => Err(format!("unknown command {other:?}\n\n{USAGE}").into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}
