//! XML payloads of xml streams: `<records><record>…</record></records>` becomes one JSON object
//! per record. Child elements become fields; an element repeated under one parent becomes an
//! array; attributes become `@name` fields; text beside child elements goes to `#text`.

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;
use serde_json::{Map, Value};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum XmlError {
    #[error("malformed XML at byte {position}: {message}")]
    Malformed { position: u64, message: String },
    #[error("expected <records> as the root element, found <{0}>")]
    WrongRoot(String),
    #[error("expected only <record> elements inside <records>, found <{0}>")]
    NotARecord(String),
    #[error("no <record> elements in <records>")]
    Empty,
}

struct Frame {
    name: String,
    fields: Map<String, Value>,
    text: String,
}

impl Frame {
    fn new(start: &BytesStart<'_>) -> Result<Self, String> {
        let name = String::from_utf8_lossy(start.name().as_ref()).into_owned();
        let mut fields = Map::new();
        for attr in start.attributes() {
            let attr = attr.map_err(|e| e.to_string())?;
            let key = format!("@{}", String::from_utf8_lossy(attr.key.as_ref()));
            let value = attr.unescape_value().map_err(|e| e.to_string())?;
            fields.insert(key, Value::String(value.into_owned()));
        }
        Ok(Self {
            name,
            fields,
            text: String::new(),
        })
    }

    fn into_value(self) -> Value {
        let text = self.text.trim();
        if self.fields.is_empty() {
            return Value::String(text.to_string());
        }
        let mut fields = self.fields;
        if !text.is_empty() {
            fields.insert("#text".into(), Value::String(text.to_string()));
        }
        Value::Object(fields)
    }
}

fn insert(fields: &mut Map<String, Value>, name: String, value: Value) {
    match fields.get_mut(&name) {
        None => {
            fields.insert(name, value);
        }
        Some(Value::Array(items)) => items.push(value),
        Some(existing) => {
            let first = existing.take();
            *existing = Value::Array(vec![first, value]);
        }
    }
}

/// Parses a records document into one JSON object per `<record>`.
pub fn records(xml: &[u8]) -> Result<Vec<Value>, XmlError> {
    let mut reader = Reader::from_reader(xml);
    reader.config_mut().trim_text(true);
    let malformed = |reader: &Reader<&[u8]>, message: String| XmlError::Malformed {
        position: reader.buffer_position(),
        message,
    };
    let mut stack: Vec<Frame> = Vec::new();
    let mut out = Vec::new();
    let mut seen_root = false;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| malformed(&reader, e.to_string()))?;
        match event {
            Event::Start(start) => {
                let frame = Frame::new(&start).map_err(|m| malformed(&reader, m))?;
                check_place(&stack, &frame.name, seen_root)?;
                seen_root = true;
                stack.push(frame);
            }
            Event::Empty(start) => {
                let frame = Frame::new(&start).map_err(|m| malformed(&reader, m))?;
                check_place(&stack, &frame.name, seen_root)?;
                seen_root = true;
                close(&mut stack, frame, &mut out);
            }
            Event::Text(text) => {
                let text = text
                    .unescape()
                    .map_err(|e| malformed(&reader, e.to_string()))?;
                if stack.len() >= 2 {
                    if let Some(top) = stack.last_mut() {
                        top.text.push_str(&text);
                    }
                } else if !text.trim().is_empty() {
                    return Err(malformed(
                        &reader,
                        format!("text outside a <record>: {:?}", text.trim()),
                    ));
                }
            }
            Event::CData(data) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&String::from_utf8_lossy(&data));
                }
            }
            Event::End(_) => {
                // quick-xml has already checked that the end tag matches.
                if let Some(frame) = stack.pop() {
                    close(&mut stack, frame, &mut out);
                }
            }
            Event::Eof => break,
            Event::Decl(_) | Event::Comment(_) | Event::PI(_) | Event::DocType(_) => {}
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err(malformed(
            &reader,
            "document ended inside an element".into(),
        ));
    }
    if !seen_root {
        return Err(malformed(&reader, "no root element".into()));
    }
    if out.is_empty() {
        return Err(XmlError::Empty);
    }
    Ok(out)
}

fn check_place(stack: &[Frame], name: &str, seen_root: bool) -> Result<(), XmlError> {
    match stack.len() {
        0 if seen_root => Err(XmlError::WrongRoot(name.to_string())),
        0 if name != "records" => Err(XmlError::WrongRoot(name.to_string())),
        1 if name != "record" => Err(XmlError::NotARecord(name.to_string())),
        _ => Ok(()),
    }
}

fn close(stack: &mut [Frame], frame: Frame, out: &mut Vec<Value>) {
    match stack.len() {
        // Closing <records> itself.
        0 => {}
        // Closing a <record>: always an object, even when empty.
        1 => out.push(match frame.into_value() {
            Value::String(s) if s.is_empty() => Value::Object(Map::new()),
            Value::String(s) => serde_json::json!({ "#text": s }),
            v => v,
        }),
        _ => {
            let name = frame.name.clone();
            let value = frame.into_value();
            if let Some(parent) = stack.last_mut() {
                insert(&mut parent.fields, name, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn seed_example() {
        let xml = b"<records>\n <record>\n <field1>value1</field1>\n </record>\n <record>\n <field1>value2</field1>\n </record>\n </records>\n";
        assert_eq!(
            records(xml).unwrap(),
            vec![json!({"field1": "value1"}), json!({"field1": "value2"})]
        );
    }

    #[test]
    fn nesting_repeats_and_attributes() {
        let xml = br#"<?xml version="1.0"?><records><record id="7"><a><b>1</b><b>2</b></a><c/><d>x &amp; y</d></record></records>"#;
        assert_eq!(
            records(xml).unwrap(),
            vec![json!({"@id": "7", "a": {"b": ["1", "2"]}, "c": "", "d": "x & y"})]
        );
    }

    #[test]
    fn errors() {
        assert!(matches!(
            records(b"<rows><record/></rows>"),
            Err(XmlError::WrongRoot(_))
        ));
        assert!(matches!(
            records(b"<records><row/></records>"),
            Err(XmlError::NotARecord(_))
        ));
        assert_eq!(records(b"<records></records>"), Err(XmlError::Empty));
        assert!(matches!(
            records(b"<records><record><a></record></records>"),
            Err(XmlError::Malformed { .. })
        ));
        assert!(matches!(
            records(b"{\"a\":1}"),
            Err(XmlError::Malformed { .. })
        ));
        assert!(matches!(
            records(b"<records><record/></records><records/>"),
            Err(XmlError::WrongRoot(_))
        ));
    }
}
