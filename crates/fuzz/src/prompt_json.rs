//! The CLI's prompt JSON (`--points`, `--labels`, `--bboxes`): three texts parsed into
//! validated objects, or refused with a one-line `InvalidPrompt`.

use mobilesam_model::prompt_json::parse_prompts;
use mobilesam_model::ModelError;

/// Splits `data` at its first two `\n` bytes into the points, labels and boxes texts (an
/// empty part is an absent flag) and parses them.
pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut parts = text
        .splitn(3, '\n')
        .map(|part| Some(part).filter(|p| !p.is_empty()));
    let points = parts.next().flatten();
    let labels = parts.next().flatten();
    let bboxes = parts.next().flatten();
    match parse_prompts(points, labels, bboxes) {
        Ok(objects) => {
            assert!(!objects.is_empty());
            for object in &objects {
                object.validate().expect("a parsed object is valid");
            }
        }
        Err(ModelError::InvalidPrompt(message)) => {
            assert!(!message.contains('\n'), "a multi-line error: {message:?}");
        }
        Err(other) => panic!("parse_prompts gave an unexpected error kind: {other}"),
    }
}
