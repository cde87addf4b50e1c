//! `liveseg serve --config FILE`: a file of `LIVESEG_*=value` lines, the
//! same names as the environment variables, so one deploy file can be
//! sourced by a shell or given to the node. Precedence, highest first:
//! command-line flag, environment variable, config file, built-in default.
//! It works by turning each line into the default of the flag that reads
//! that variable; an unknown name is an error that names the line.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The `--config` value from the raw arguments, else `LIVESEG_CONFIG`.
pub fn config_path(args: &[OsString]) -> Option<PathBuf> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let a = a.to_string_lossy();
        if a == "--config" {
            return it.next().map(PathBuf::from);
        }
        if let Some(v) = a.strip_prefix("--config=") {
            return Some(PathBuf::from(v));
        }
    }
    std::env::var_os("LIVESEG_CONFIG").map(PathBuf::from)
}

/// `(NAME, value)` pairs of a config file, or the first bad line.
pub fn parse(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((name, value)) = line.split_once('=') else {
            return Err(format!("line {}: expected NAME=value", n + 1));
        };
        let name = name.trim();
        if !name.starts_with("LIVESEG_") {
            return Err(format!(
                "line {}: '{name}' is not a LIVESEG_* setting",
                n + 1
            ));
        }
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        out.push((name.to_owned(), value.to_owned()));
    }
    Ok(out)
}

/// Makes each setting of the file the default of the `serve` flag that
/// reads the same environment variable.
pub fn apply(mut cmd: clap::Command, path: &Path) -> Result<clap::Command, clap::Error> {
    let bad = |msg: String| clap::Error::raw(clap::error::ErrorKind::ValueValidation, msg + "\n");
    let text = std::fs::read_to_string(path)
        .map_err(|e| bad(format!("config file {}: {e}", path.display())))?;
    let settings = parse(&text).map_err(|e| bad(format!("config file {}: {e}", path.display())))?;
    let reads = |a: &clap::Arg, name: &str| a.get_env().is_some_and(|e| e == name);
    for (name, value) in settings {
        // The command line lives as long as the process.
        let value: &'static str = Box::leak(value.into_boxed_str());
        // Global options (data dir, ...) are the root command's.
        let global = cmd
            .get_arguments()
            .find(|a| reads(a, &name))
            .map(|a| a.get_id().to_string());
        if let Some(id) = global {
            cmd = cmd.mut_arg(id, |a| a.default_value(value));
            continue;
        }
        let serve = cmd
            .find_subcommand("serve")
            .ok_or_else(|| bad("no serve command".into()))?;
        let id = serve
            .get_arguments()
            .find(|a| reads(a, &name))
            .map(|a| a.get_id().to_string())
            .ok_or_else(|| {
                bad(format!(
                    "config file {}: '{name}' is not a setting of liveseg serve",
                    path.display()
                ))
            })?;
        cmd = cmd.mut_subcommand("serve", |s| s.mut_arg(id, |a| a.default_value(value)));
    }
    Ok(cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_with_comments_quotes_and_export() {
        let text = "# cluster\nLIVESEG_CLUSTER=true\nexport LIVESEG_SHARDS = 16\n\nLIVESEG_REDIS_URL=\"redis://127.0.0.1:7000/\"\n";
        let got = parse(text).expect("parses");
        assert_eq!(
            got,
            vec![
                ("LIVESEG_CLUSTER".into(), "true".into()),
                ("LIVESEG_SHARDS".into(), "16".into()),
                ("LIVESEG_REDIS_URL".into(), "redis://127.0.0.1:7000/".into()),
            ]
        );
    }

    #[test]
    fn bad_lines_are_named() {
        assert_eq!(
            parse("LIVESEG_X=1\nnonsense").unwrap_err(),
            "line 2: expected NAME=value"
        );
        assert!(parse("PATH=/bin").unwrap_err().contains("line 1"));
    }

    #[test]
    fn file_settings_become_defaults_that_flags_override() {
        use clap::{CommandFactory, FromArgMatches};
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("node.env");
        std::fs::write(
            &path,
            "LIVESEG_DATA_DIR=/srv/ls\nLIVESEG_CLUSTER=true\nLIVESEG_SHARDS=12\nLIVESEG_LISTEN=127.0.0.1:9001\n",
        )
        .expect("write");
        let cmd = apply(crate::args::Cli::command(), &path).expect("applies");
        let m = cmd
            .try_get_matches_from(["liveseg", "serve", "--listen", "127.0.0.1:9002"])
            .expect("parses");
        let cli = crate::args::Cli::from_arg_matches(&m).expect("cli");
        assert_eq!(cli.global.data_dir(), PathBuf::from("/srv/ls"));
        let crate::args::Command::Serve(serve) = cli.command else {
            panic!("not serve")
        };
        assert!(serve.cluster.cluster);
        assert_eq!(serve.cluster.shards, Some(12));
        // The flag wins over the file.
        assert_eq!(serve.listen.map(|a| a.port()), Some(9002));
        std::fs::write(&path, "LIVESEG_NOT_A_SETTING=1\n").expect("write");
        let err = apply(crate::args::Cli::command(), &path).expect_err("unknown name");
        assert!(err.to_string().contains("LIVESEG_NOT_A_SETTING"), "{err}");
    }

    #[test]
    fn the_path_comes_from_either_flag_form() {
        let args: Vec<OsString> = ["liveseg", "serve", "--config", "/etc/a.env"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(config_path(&args), Some(PathBuf::from("/etc/a.env")));
        let args: Vec<OsString> = ["liveseg", "serve", "--config=/b.env"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(config_path(&args), Some(PathBuf::from("/b.env")));
    }
}
