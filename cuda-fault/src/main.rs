use std::io::Write;

use clap::Parser;

fn main() {
    let cli = match cuda_fault::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => std::process::exit(cuda_fault::usage_error(&e)),
    };
    let mut out = std::io::stdout().lock();
    let code = cuda_fault::run(cli, &mut out, &mut std::io::stderr().lock());
    let _ = out.flush();
    std::process::exit(i32::from(code));
}
