//! Turns query text into tokens that remember where they came from.

use crate::ast::Span;
use crate::error::Diagnostic;

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    Ident(String),
    Str(String),
    /// The number and whether it was written without a fraction (windows need integers).
    Num(f64, bool),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Dot,
    Colon,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Eof,
}

impl Tok {
    pub fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("`{s}`"),
            Tok::Str(_) => "a string".into(),
            Tok::Num(..) => "a number".into(),
            Tok::LParen => "`(`".into(),
            Tok::RParen => "`)`".into(),
            Tok::LBracket => "`[`".into(),
            Tok::RBracket => "`]`".into(),
            Tok::Comma => "`,`".into(),
            Tok::Dot => "`.`".into(),
            Tok::Colon => "`:`".into(),
            Tok::Eq => "`=`".into(),
            Tok::Ne => "`!=`".into(),
            Tok::Lt => "`<`".into(),
            Tok::Le => "`<=`".into(),
            Tok::Gt => "`>`".into(),
            Tok::Ge => "`>=`".into(),
            Tok::Eof => "end of query".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub tok: Tok,
    pub span: Span,
}

pub fn tokenize(src: &str) -> Result<Vec<Token>, Diagnostic> {
    let mut lx = Lexer {
        chars: src.char_indices().collect(),
        pos: 0,
        line: 1,
        col: 1,
        len: src.len(),
    };
    let mut out = Vec::new();
    loop {
        lx.skip_ws();
        let start = lx.mark();
        let Some(c) = lx.peek() else {
            out.push(Token {
                tok: Tok::Eof,
                span: lx.span_from(start),
            });
            return Ok(out);
        };
        let tok = match c {
            '(' => lx.single(Tok::LParen),
            ')' => lx.single(Tok::RParen),
            '[' => lx.single(Tok::LBracket),
            ']' => lx.single(Tok::RBracket),
            ',' => lx.single(Tok::Comma),
            '.' => lx.single(Tok::Dot),
            ':' => lx.single(Tok::Colon),
            '=' => {
                lx.bump();
                if lx.peek() == Some('=') {
                    lx.bump();
                }
                Tok::Eq
            }
            '!' => {
                lx.bump();
                if lx.peek() == Some('=') {
                    lx.bump();
                    Tok::Ne
                } else {
                    return Err(Diagnostic::new(
                        "expected `!=`; write `not` for negation",
                        lx.span_from(start),
                    ));
                }
            }
            '<' => {
                lx.bump();
                if lx.peek() == Some('=') {
                    lx.bump();
                    Tok::Le
                } else {
                    Tok::Lt
                }
            }
            '>' => {
                lx.bump();
                if lx.peek() == Some('=') {
                    lx.bump();
                    Tok::Ge
                } else {
                    Tok::Gt
                }
            }
            '"' => lx.string(start)?,
            c if c.is_ascii_digit() || c == '-' => lx.number(start)?,
            c if c.is_ascii_alphabetic() || c == '_' => {
                let mut s = String::new();
                while let Some(c) = lx.peek() {
                    if c.is_ascii_alphanumeric() || c == '_' {
                        s.push(c);
                        lx.bump();
                    } else {
                        break;
                    }
                }
                Tok::Ident(s)
            }
            other => {
                lx.bump();
                return Err(Diagnostic::new(
                    format!("unexpected character `{other}`"),
                    lx.span_from(start),
                ));
            }
        };
        out.push(Token {
            tok,
            span: lx.span_from(start),
        });
    }
}

struct Lexer {
    chars: Vec<(usize, char)>,
    pos: usize,
    line: u32,
    col: u32,
    len: usize,
}

#[derive(Clone, Copy)]
struct Mark {
    offset: usize,
    line: u32,
    col: u32,
}

impl Lexer {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).map(|&(_, c)| c)
    }

    fn offset(&self) -> usize {
        self.chars.get(self.pos).map_or(self.len, |&(o, _)| o)
    }

    fn bump(&mut self) {
        if let Some(c) = self.peek() {
            self.pos += 1;
            if c == '\n' {
                self.line += 1;
                self.col = 1;
            } else {
                self.col += 1;
            }
        }
    }

    fn mark(&self) -> Mark {
        Mark {
            offset: self.offset(),
            line: self.line,
            col: self.col,
        }
    }

    fn span_from(&self, m: Mark) -> Span {
        Span {
            start: m.offset,
            end: self.offset().max(m.offset),
            line: m.line,
            col: m.col,
        }
    }

    fn single(&mut self, t: Tok) -> Tok {
        self.bump();
        t
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(c) if c.is_whitespace()) {
            self.bump();
        }
    }

    fn string(&mut self, start: Mark) -> Result<Tok, Diagnostic> {
        self.bump();
        let mut s = String::new();
        loop {
            match self.peek() {
                None => {
                    return Err(Diagnostic::new(
                        "string is not closed",
                        self.span_from(start),
                    ))
                }
                Some('"') => {
                    self.bump();
                    return Ok(Tok::Str(s));
                }
                Some('\\') => {
                    let esc = self.mark();
                    self.bump();
                    let c = match self.peek() {
                        Some('"') => '"',
                        Some('\\') => '\\',
                        Some('n') => '\n',
                        Some('t') => '\t',
                        Some('r') => '\r',
                        _ => {
                            self.bump();
                            return Err(Diagnostic::new(
                                "unknown escape; use \\\" \\\\ \\n \\t or \\r",
                                self.span_from(esc),
                            ));
                        }
                    };
                    self.bump();
                    s.push(c);
                }
                Some(c) => {
                    s.push(c);
                    self.bump();
                }
            }
        }
    }

    fn number(&mut self, start: Mark) -> Result<Tok, Diagnostic> {
        let mut text = String::new();
        if self.peek() == Some('-') {
            text.push('-');
            self.bump();
        }
        let mut integral = true;
        let mut digits = 0;
        while let Some(c) = self.peek() {
            if c.is_ascii_digit() {
                digits += 1;
                text.push(c);
                self.bump();
            } else if c == '.'
                && integral
                && digits > 0
                && self
                    .chars
                    .get(self.pos + 1)
                    .is_some_and(|&(_, d)| d.is_ascii_digit())
            {
                integral = false;
                text.push(c);
                self.bump();
            } else {
                break;
            }
        }
        if digits == 0 {
            return Err(Diagnostic::new(
                "expected digits after `-`",
                self.span_from(start),
            ));
        }
        match text.parse::<f64>() {
            Ok(n) if n.is_finite() => Ok(Tok::Num(n, integral)),
            _ => Err(Diagnostic::new(
                "number out of range",
                self.span_from(start),
            )),
        }
    }
}
