//! OAuth request parameters, from an `application/x-www-form-urlencoded` body or an
//! authorization request's query (RFC 6749 sections 3.1 and 3.2): parameters without a
//! value are treated as omitted, and a parameter sent more than once is an error
//! (except where a spec allows repeats).

use super::error::{OAuthError, OAuthResult};

pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    pub fn parse(bytes: &[u8]) -> Self {
        Self {
            pairs: form_urlencoded::parse(bytes)
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .filter(|(_, v)| !v.is_empty())
                .collect(),
        }
    }

    /// The single value of `name`, if present.
    pub fn get(&self, name: &str) -> OAuthResult<Option<&str>> {
        let mut values = self.pairs.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let first = values.next();
        if values.next().is_some() {
            return Err(OAuthError::invalid_request(format!("parameter {name} was given more than once")));
        }
        Ok(first)
    }

    pub fn require(&self, name: &str) -> OAuthResult<&str> {
        self.get(name)?.ok_or_else(|| OAuthError::invalid_request(format!("missing parameter {name}")))
    }

    /// The parameters re-encoded in canonical `application/x-www-form-urlencoded` form:
    /// plain ASCII, safe in a URL, a header and an HTML attribute.
    pub fn canonical(&self) -> String {
        form_urlencoded::Serializer::new(String::new()).extend_pairs(self.pairs.iter()).finish()
    }

    /// Every value of a parameter that may repeat (`resource`, RFC 8707).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.pairs.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_and_empty_values() {
        let f = Params::parse(b"grant_type=client_credentials&scope=&resource=a&resource=b&x=1&x=2");
        assert_eq!(f.get("grant_type").unwrap(), Some("client_credentials"));
        assert_eq!(f.get("scope").unwrap(), None);
        assert_eq!(f.all("resource"), vec!["a", "b"]);
        assert!(f.get("x").is_err());
        assert!(f.require("code").is_err());
    }
}
