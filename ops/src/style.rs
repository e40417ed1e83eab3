//! Colour on a terminal: on when standard output is a terminal and `NO_COLOR` is unset or empty
//! (<https://no-color.org>), off otherwise, so that piped output and logs stay plain text.

use console::Style;
use std::io::IsTerminal as _;

/// Whether this process prints colour: decided once, from the terminal and `NO_COLOR`.
pub fn init() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let on = !no_color && std::io::stdout().is_terminal();
    console::set_colors_enabled(on);
    console::set_colors_enabled_stderr(on && std::io::stderr().is_terminal());
    on
}

/// A task's or unit's state, coloured by what it means: green done, red failed, yellow waiting,
/// cyan running; plain when colour is off.
pub fn state(text: &str) -> String {
    let style = match text {
        "succeeded" => Style::new().green(),
        "failed" | "target-lost" => Style::new().red().bold(),
        "cancelled" | "skipped" => Style::new().dim(),
        "queued" | "waiting" => Style::new().yellow(),
        "running" | "dispatched" => Style::new().cyan(),
        _ => Style::new(),
    };
    style.apply_to(text).to_string()
}

/// A heading or a name to stand out.
pub fn bold(text: &str) -> String {
    Style::new().bold().apply_to(text).to_string()
}

/// Secondary text (times, reasons).
pub fn dim(text: &str) -> String {
    Style::new().dim().apply_to(text).to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn without_colour_states_are_plain_text() {
        console::set_colors_enabled(false);
        assert_eq!(super::state("failed"), "failed");
        assert_eq!(super::bold("x"), "x");
    }
}
