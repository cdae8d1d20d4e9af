//! Reading a name or a secret: from the terminal (secrets unechoed), or one line of
//! standard input.

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use zeroize::Zeroizing;

pub fn is_terminal() -> bool {
    std::io::stdin().is_terminal()
}

/// One line of standard input, without its line ending.
pub fn line_from_stdin() -> Result<Zeroizing<String>, String> {
    let mut line = Zeroizing::new(String::new());
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("reading standard input: {e}"))?;
    Ok(Zeroizing::new(
        line.trim_end_matches(['\n', '\r']).to_owned(),
    ))
}

/// Ask for a secret (unechoed on a terminal).
pub fn secret(prompt: &str) -> Result<Zeroizing<String>, String> {
    if is_terminal() {
        return rpassword::prompt_password(prompt)
            .map(Zeroizing::new)
            .map_err(|e| format!("reading the password: {e}"));
    }
    eprint!("{prompt}");
    line_from_stdin()
}

/// Ask for a line (echoed).
pub fn line(prompt: &str) -> Result<Zeroizing<String>, String> {
    print!("{prompt}");
    let _ = std::io::stdout().flush();
    line_from_stdin()
}
