//! The one-line message a failed command prints.

/// The error and its causes as one line, `outer: cause: root cause`, skipping a cause whose
/// text the message already holds (many errors repeat their source in their own text, which
/// `{:#}` would print twice) and joining multi-line texts with spaces.
pub fn one_line(err: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in err.chain() {
        let text = flatten(&cause.to_string());
        if text.is_empty() || message.contains(&text) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&text);
    }
    message
}

fn flatten(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[derive(Debug)]
    struct Repeats {
        source: std::io::Error,
    }

    impl std::fmt::Display for Repeats {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "cannot read x.png: {}", self.source)
        }
    }

    impl std::error::Error for Repeats {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.source)
        }
    }

    #[test]
    fn a_cause_repeated_in_its_parent_is_printed_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let err = anyhow::Error::new(Repeats { source: io });
        assert_eq!(one_line(&err), "cannot read x.png: no such file");
    }

    #[test]
    fn contexts_and_lines_are_joined() {
        let err = Err::<(), _>(anyhow::anyhow!("bad\n  header"))
            .context("cannot load the model")
            .unwrap_err();
        assert_eq!(one_line(&err), "cannot load the model: bad header");
    }
}
