//! Escaping for the chat platforms' markup: text from alerts and people
//! goes out as text. A leaf both the chat adapters and the templates use
//! (and [`html`], the console's and the report charts').

pub mod discord;
pub mod html;
pub mod slack;

/// Whether `c` is a control or bidirectional character no chat message
/// should carry (it could reorder what a message appears to say); both
/// platforms' escaping drops them.
pub fn is_unsafe_char(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(c,
            '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}
