//! The syntax rules of the specification: attribute names, allowed characters, URIs (RFC 3986) and media types
//! (RFC 2045/2046), written as small allocation-free checkers.

use crate::error::Rule;

/// Names of the core context attributes, plus `data`, which the spec reserves.
pub(crate) const RESERVED_NAMES: [&str; 9] = [
    "specversion",
    "id",
    "source",
    "type",
    "datacontenttype",
    "dataschema",
    "subject",
    "time",
    "data",
];

/// Attribute names: non-empty, lowercase ASCII letters and digits only.
pub(crate) fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit())
}

/// Checks a name for an extension attribute: the naming rule, then the reserved names.
pub(crate) fn check_extension_name(name: &str) -> Result<(), Rule> {
    if !is_valid_name(name) {
        return Err(Rule::InvalidName);
    }
    if RESERVED_NAMES.contains(&name) {
        return Err(Rule::ReservedName);
    }
    Ok(())
}

/// Checks a `String` value against the type system: no control characters, no noncharacters.
/// (Unpaired surrogates cannot occur in a Rust string; the JSON parser refuses them.)
pub(crate) fn check_string(value: &str) -> Result<(), Rule> {
    // Fast path: printable ASCII only.
    if value.bytes().all(|byte| (0x20..0x7f).contains(&byte)) {
        return Ok(());
    }
    match value.chars().find(|&character| is_forbidden(character)) {
        Some(character) => Err(Rule::ForbiddenCharacter { character }),
        None => Ok(()),
    }
}

fn is_forbidden(character: char) -> bool {
    let code = u32::from(character);
    code <= 0x1f
        || (0x7f..=0x9f).contains(&code)
        || (0xfdd0..=0xfdef).contains(&code)
        || (code & 0xfffe) == 0xfffe
}

/// Checks a non-empty `String` attribute.
pub(crate) fn check_non_empty_string(value: &str) -> Result<(), Rule> {
    if value.is_empty() {
        return Err(Rule::Empty);
    }
    check_string(value)
}

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

fn is_sub_delim(byte: u8) -> bool {
    matches!(
        byte,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    )
}

/// Walks `text`, accepting bytes for which `allowed` holds and percent-encoded octets.
fn check_chars(text: &[u8], allowed: impl Fn(u8) -> bool) -> Result<(), &'static str> {
    let mut index = 0;
    while index < text.len() {
        let byte = text[index];
        if byte == b'%' {
            let hex = text.get(index + 1..index + 3);
            match hex {
                Some([high, low]) if high.is_ascii_hexdigit() && low.is_ascii_hexdigit() => {
                    index += 3
                }
                _ => return Err("'%' not followed by two hexadecimal digits"),
            }
        } else if allowed(byte) {
            index += 1;
        } else if byte == b' ' {
            return Err("contains a space");
        } else if !byte.is_ascii() {
            return Err("contains a non-ASCII character (percent-encode it)");
        } else {
            return Err("contains a character that is not allowed there");
        }
    }
    Ok(())
}

fn is_pchar(byte: u8) -> bool {
    is_unreserved(byte) || is_sub_delim(byte) || byte == b':' || byte == b'@'
}

fn check_query_or_fragment(text: &[u8]) -> Result<(), &'static str> {
    check_chars(text, |byte| is_pchar(byte) || byte == b'/' || byte == b'?')
}

fn check_path(path: &[u8]) -> Result<(), &'static str> {
    check_chars(path, |byte| is_pchar(byte) || byte == b'/')
}

fn is_valid_scheme(scheme: &[u8]) -> bool {
    match scheme.split_first() {
        Some((first, rest)) => {
            first.is_ascii_alphabetic()
                && rest
                    .iter()
                    .all(|&byte| byte.is_ascii_alphanumeric() || matches!(byte, b'+' | b'-' | b'.'))
        }
        None => false,
    }
}

fn check_authority(authority: &[u8]) -> Result<(), &'static str> {
    let host_and_port = match authority.iter().position(|&byte| byte == b'@') {
        Some(at) => {
            check_chars(&authority[..at], |byte| {
                is_unreserved(byte) || is_sub_delim(byte) || byte == b':'
            })
            .map_err(|_| "invalid user information")?;
            &authority[at + 1..]
        }
        None => authority,
    };
    let (host, port) = if host_and_port.first() == Some(&b'[') {
        let close = host_and_port
            .iter()
            .position(|&byte| byte == b']')
            .ok_or("IP literal without closing ']'")?;
        check_ip_literal(&host_and_port[1..close])?;
        match &host_and_port[close + 1..] {
            [] => (&[][..], None),
            [b':', port @ ..] => (&[][..], Some(port)),
            _ => return Err("unexpected characters after IP literal"),
        }
    } else {
        match host_and_port.iter().rposition(|&byte| byte == b':') {
            Some(colon) => (&host_and_port[..colon], Some(&host_and_port[colon + 1..])),
            None => (host_and_port, None),
        }
    };
    check_chars(host, |byte| is_unreserved(byte) || is_sub_delim(byte))
        .map_err(|_| "invalid host")?;
    if let Some(port) = port
        && !port.iter().all(u8::is_ascii_digit)
    {
        return Err("port must be digits");
    }
    Ok(())
}

fn check_ip_literal(literal: &[u8]) -> Result<(), &'static str> {
    if let [b'v' | b'V', rest @ ..] = literal {
        let dot = rest
            .iter()
            .position(|&byte| byte == b'.')
            .ok_or("invalid IPvFuture literal")?;
        let (version, address) = (&rest[..dot], &rest[dot + 1..]);
        if version.is_empty()
            || !version.iter().all(u8::is_ascii_hexdigit)
            || address.is_empty()
            || !address
                .iter()
                .all(|&byte| is_unreserved(byte) || is_sub_delim(byte) || byte == b':')
        {
            return Err("invalid IPvFuture literal");
        }
        return Ok(());
    }
    std::str::from_utf8(literal)
        .ok()
        .and_then(|text| text.parse::<std::net::Ipv6Addr>().ok())
        .map(|_| ())
        .ok_or("invalid IPv6 address")
}

/// Checks `hier-part` / `relative-part` (everything before `?` and `#`).
fn check_hier_part(part: &[u8]) -> Result<(), &'static str> {
    if let Some(rest) = part.strip_prefix(b"//") {
        let end = rest
            .iter()
            .position(|&byte| byte == b'/')
            .unwrap_or(rest.len());
        check_authority(&rest[..end])?;
        check_path(&rest[end..])
    } else {
        check_path(part)
    }
}

/// Splits a URI-reference into (before query and fragment, query, fragment).
fn split_reference(text: &[u8]) -> (&[u8], Option<&[u8]>, Option<&[u8]>) {
    let (rest, fragment) = match text.iter().position(|&byte| byte == b'#') {
        Some(hash) => (&text[..hash], Some(&text[hash + 1..])),
        None => (text, None),
    };
    let (rest, query) = match rest.iter().position(|&byte| byte == b'?') {
        Some(question) => (&rest[..question], Some(&rest[question + 1..])),
        None => (rest, None),
    };
    (rest, query, fragment)
}

/// Finds the scheme of a reference: the text before the first ':' if no '/' comes earlier.
fn scheme_end(text: &[u8]) -> Option<usize> {
    let colon = text.iter().position(|&byte| byte == b':')?;
    if text[..colon].contains(&b'/') {
        None
    } else {
        Some(colon)
    }
}

/// RFC 3986 section 4.1: `URI-reference = URI / relative-ref`.
pub(crate) fn check_uri_reference(text: &str) -> Result<(), Rule> {
    uri_reference(text.as_bytes()).map_err(|reason| Rule::InvalidUriReference { reason })
}

fn uri_reference(text: &[u8]) -> Result<(), &'static str> {
    let (before, query, fragment) = split_reference(text);
    let hier = match scheme_end(before) {
        Some(colon) => {
            if !is_valid_scheme(&before[..colon]) {
                return Err("a relative reference cannot have ':' in its first path segment");
            }
            &before[colon + 1..]
        }
        None => before,
    };
    check_hier_part(hier)?;
    if let Some(query) = query {
        check_query_or_fragment(query).map_err(|_| "invalid query")?;
    }
    if let Some(fragment) = fragment {
        check_query_or_fragment(fragment).map_err(|_| "invalid fragment")?;
    }
    Ok(())
}

/// RFC 3986 section 4.3: `absolute-URI = scheme ":" hier-part [ "?" query ]`.
pub(crate) fn check_absolute_uri(text: &str) -> Result<(), Rule> {
    absolute_uri(text.as_bytes()).map_err(|reason| Rule::InvalidUri { reason })
}

fn absolute_uri(text: &[u8]) -> Result<(), &'static str> {
    if text.is_empty() {
        return Err("empty");
    }
    let (before, query, fragment) = split_reference(text);
    if fragment.is_some() {
        return Err("an absolute URI has no fragment");
    }
    let colon = scheme_end(before).ok_or("no scheme")?;
    if !is_valid_scheme(&before[..colon]) {
        return Err("invalid scheme");
    }
    check_hier_part(&before[colon + 1..])?;
    if let Some(query) = query {
        check_query_or_fragment(query).map_err(|_| "invalid query")?;
    }
    Ok(())
}

/// RFC 2045 `token` characters: visible ASCII except the tspecials.
fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_graphic()
        && !matches!(
            byte,
            b'(' | b')'
                | b'<'
                | b'>'
                | b'@'
                | b','
                | b';'
                | b':'
                | b'\\'
                | b'"'
                | b'/'
                | b'['
                | b']'
                | b'?'
                | b'='
        )
}

fn token_len(text: &[u8]) -> usize {
    text.iter().take_while(|&&byte| is_token_byte(byte)).count()
}

fn skip_whitespace(text: &[u8]) -> &[u8] {
    let count = text
        .iter()
        .take_while(|&&byte| byte == b' ' || byte == b'\t')
        .count();
    &text[count..]
}

/// Parses an RFC 2045/2046 media type: `type "/" subtype *( ";" attribute "=" value )` where value is a token
/// or a quoted string. Returns the subtype (without parameters) on success.
pub(crate) fn parse_media_type(text: &str) -> Result<&str, Rule> {
    media_type(text.as_bytes())
        .map(|(start, end)| &text[start..end])
        .map_err(|reason| Rule::InvalidMediaType { reason })
}

fn media_type(text: &[u8]) -> Result<(usize, usize), &'static str> {
    let type_len = token_len(text);
    if type_len == 0 {
        return Err("missing type");
    }
    if text.get(type_len) != Some(&b'/') {
        return Err("missing '/' after the type");
    }
    let subtype_start = type_len + 1;
    let subtype_len = token_len(&text[subtype_start..]);
    if subtype_len == 0 {
        return Err("missing subtype");
    }
    let subtype_end = subtype_start + subtype_len;
    let mut rest = skip_whitespace(&text[subtype_end..]);
    while !rest.is_empty() {
        rest = rest
            .strip_prefix(b";")
            .ok_or("unexpected character after the media type")?;
        rest = skip_whitespace(rest);
        let name_len = token_len(rest);
        if name_len == 0 {
            return Err("missing parameter name");
        }
        rest = rest[name_len..]
            .strip_prefix(b"=")
            .ok_or("parameter without '='")?;
        if let Some(quoted) = rest.strip_prefix(b"\"") {
            let mut index = 0;
            loop {
                match quoted.get(index) {
                    None => return Err("unterminated quoted parameter value"),
                    Some(b'"') => break,
                    Some(b'\\') if index + 1 < quoted.len() => index += 2,
                    Some(&byte) if byte == b'\r' || byte == b'\n' => {
                        return Err("line break in quoted parameter value");
                    }
                    Some(_) => index += 1,
                }
            }
            rest = &quoted[index + 1..];
        } else {
            let value_len = token_len(rest);
            if value_len == 0 {
                return Err("missing parameter value");
            }
            rest = &rest[value_len..];
        }
        rest = skip_whitespace(rest);
    }
    Ok((subtype_start, subtype_end))
}

/// Whether a media subtype declares JSON content: `json` or ending in `+json` (ASCII case-insensitive).
pub(crate) fn is_json_subtype(subtype: &str) -> bool {
    let bytes = subtype.as_bytes();
    bytes.eq_ignore_ascii_case(b"json")
        || (bytes.len() > 5 && bytes[bytes.len() - 5..].eq_ignore_ascii_case(b"+json"))
}

/// Validates `datacontenttype` and says whether it declares JSON content.
pub(crate) fn check_content_type(value: &str) -> Result<bool, Rule> {
    check_string(value)?;
    let subtype = parse_media_type(value)?;
    Ok(is_json_subtype(subtype))
}

/// Whether an (already validated or arbitrary) content type declares JSON content. Unparseable ones do not.
pub(crate) fn content_type_is_json(value: &str) -> bool {
    parse_media_type(value).is_ok_and(is_json_subtype)
}
