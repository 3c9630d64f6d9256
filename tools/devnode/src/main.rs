//! `devnode --package <zip|dir> --data-dir <dir> --http-port <p> --control-port <p> --password <pw>
//!  [--node operator.os] [--peer alice.os ...] [--peer-package bob.os=<zip|dir> ...]
//!  [--package-id name:publisher] [--quiet]`

use std::path::PathBuf;
use std::process::ExitCode;

fn parse(args: Vec<String>) -> Result<devnode::Config, String> {
    let mut config = devnode::Config {
        package: PathBuf::new(),
        package_id: None,
        data_dir: devnode::default_data_dir(),
        http_port: 0,
        control_port: 0,
        password: String::new(),
        node: "operator.os".to_string(),
        peers: vec![],
        peer_packages: vec![],
        quiet: false,
    };
    let mut it = args.into_iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--package" => config.package = PathBuf::from(value()?),
            "--package-id" => config.package_id = Some(value()?),
            "--data-dir" => config.data_dir = PathBuf::from(value()?),
            "--http-port" => config.http_port = value()?.parse().map_err(|_| "--http-port needs a port number")?,
            "--control-port" => config.control_port = value()?.parse().map_err(|_| "--control-port needs a port number")?,
            "--password" => config.password = value()?,
            "--node" => config.node = value()?,
            "--peer" => config.peers.push(value()?),
            "--peer-package" => config.peer_packages.push(devnode::PeerPackage::parse(&value()?)?),
            "--quiet" => config.quiet = true,
            other => return Err(format!("unknown flag {other}")),
        }
    }
    if config.package.as_os_str().is_empty() {
        return Err("--package <zip or pkg dir> is required".to_string());
    }
    Ok(config)
}

#[tokio::main]
async fn main() -> ExitCode {
    let config = match parse(std::env::args().skip(1).collect()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("devnode: {e}");
            return ExitCode::from(2);
        }
    };
    match devnode::run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("devnode: {e}");
            ExitCode::FAILURE
        }
    }
}
