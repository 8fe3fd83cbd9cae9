//! Secrets stay out of what the binary prints: `--help` of every subcommand, with every
//! secret-bearing variable set, shows none of their values (clap prints `[env: NAME=value]`
//! unless told not to).

use std::process::Command;

use clap::CommandFactory;
use decay_worker::cli::Cli;

/// A marker inside every secret we set; it must appear nowhere in the output.
const MARK: &str = "S3CRET";

/// The secret-bearing variables, each with a value as an operator would set it.
fn secret_env() -> Vec<(&'static str, String)> {
    vec![
        (
            "DATABASE_URL",
            format!("postgres://u:{MARK}db@db.example/decay"),
        ),
        ("AMQP_URL", format!("amqp://u:{MARK}mq@mq.example/%2f")),
        (
            "DECAY_OPENAI_BASE_URL",
            format!("https://llm.example/v1?api-key={MARK}oa"),
        ),
        ("DECAY_OPENAI_API_KEY", format!("sk-{MARK}key")),
        ("DECAY_DASHBOARD_TOKEN", format!("{MARK}token")),
    ]
}

/// Every subcommand path of the tree, e.g. `["jobs", "list"]`, the root included (`[]`).
fn command_paths() -> Vec<Vec<String>> {
    fn walk(cmd: &clap::Command, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
        out.push(prefix.clone());
        for sub in cmd.get_subcommands() {
            let mut path = prefix.clone();
            path.push(sub.get_name().to_string());
            walk(sub, path, out);
        }
    }
    let mut out = Vec::new();
    walk(&Cli::command(), Vec::new(), &mut out);
    out
}

/// An env var name that may carry a secret: a URL (may hold a password or a token query
/// parameter), a key, a token, a password.
fn may_carry_a_secret(env: &str) -> bool {
    ["URL", "SECRET", "PASSWORD", "API_KEY"]
        .iter()
        .any(|word| env.contains(word))
        || env.ends_with("_TOKEN")
}

/// Statically: every argument of every subcommand whose variable may carry a secret hides its
/// value. Catches a new flag before anyone runs `--help` with a secret set.
#[test]
fn every_secret_bearing_argument_hides_its_env_value() {
    fn check(cmd: &clap::Command, path: &str, checked: &mut usize) {
        for arg in cmd.get_arguments() {
            let Some(env) = arg.get_env() else { continue };
            let env = env.to_string_lossy();
            if may_carry_a_secret(&env) {
                *checked += 1;
                assert!(
                    arg.is_hide_env_values_set(),
                    "`{path}` --{}: {env} may carry a secret but its value is shown in --help",
                    arg.get_id()
                );
            }
        }
        for sub in cmd.get_subcommands() {
            check(sub, &format!("{path} {}", sub.get_name()), checked);
        }
    }
    let mut checked = 0;
    check(&Cli::command(), "decay-worker", &mut checked);
    // DATABASE_URL, AMQP_URL and DECAY_OPENAI_BASE_URL, in every subcommand that has them.
    assert!(
        checked >= 10,
        "only {checked} secret-bearing arguments found"
    );
}

/// The binary's `--help` (and `-h`) for every subcommand, with every secret set, prints none.
#[test]
fn help_never_prints_secret_env_values() {
    let paths = command_paths();
    assert!(paths.len() > 15, "subcommands: {paths:?}");
    let mut showing_database_url = 0;
    for path in &paths {
        for flag in ["--help", "-h"] {
            let out = Command::new(env!("CARGO_BIN_EXE_decay-worker"))
                .args(path)
                .arg(flag)
                .envs(secret_env())
                .output()
                .expect("run decay-worker");
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(out.status.success(), "{path:?} {flag}: {text}");
            assert!(
                !text.contains(MARK),
                "`decay-worker {} {flag}` printed a secret:\n{text}",
                path.join(" ")
            );
            if text.contains("[env: DATABASE_URL]") {
                showing_database_url += 1;
            }
        }
    }
    // The variable is still named in help, just without its value: the test looked at real
    // help texts of the commands that take a database.
    assert!(
        showing_database_url >= 10,
        "only {showing_database_url} help texts name DATABASE_URL"
    );
}
