//! Error text that an image wrote (entry names, the bytes of a broken tar
//! header quoted back), made fit for a terminal.

use anyhow::anyhow;

/// An error whose text an image wrote (entry names, the bytes of a broken
/// tar header quoted back) made fit for a terminal: control characters
/// are escaped, so a hostile name can neither break the one error line nor
/// send escape sequences or carriage returns to the user's terminal.
pub fn printable(e: anyhow::Error) -> anyhow::Error {
    let text = format!("{e:#}");
    if !text.chars().any(char::is_control) {
        return e;
    }
    let escaped: String = text
        .chars()
        .map(|c| {
            if c.is_control() {
                c.escape_debug().to_string()
            } else {
                c.to_string()
            }
        })
        .collect();
    anyhow!(escaped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_from_image_text_stay_printable() {
        let e = anyhow!("entry a\x1b]0;owned\x07\rb/\n..").context("layer 2");
        let text = format!("{:#}", printable(e));
        assert!(!text.chars().any(char::is_control), "{text:?}");
        assert_eq!(text, "layer 2: entry a\\u{1b}]0;owned\\u{7}\\rb/\\n..");
        // Clean errors keep their chain.
        let e = printable(anyhow!("inner").context("outer"));
        assert_eq!(e.chain().count(), 2);
    }
}
