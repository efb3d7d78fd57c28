use std::io::Write;

use clap::Parser;

fn main() {
    // Usage errors exit 2 from inside parse(), with clap's message.
    let cli = cuda_fault::Cli::parse();
    let mut out = std::io::stdout().lock();
    let code = cuda_fault::run(cli, &mut out, &mut std::io::stderr().lock());
    let _ = out.flush();
    std::process::exit(i32::from(code));
}
