//! The canonical JSON of claims (§5): the exact bytes a minter seals, the same in every implementation.

use zeroize::Zeroizing;

use crate::text::ipnet::IpNet;
use crate::token::claims::Claims;

/// The §5 serialisation: members in table order, absent members left out, no whitespace, minimal
/// escaping. serde_json escapes strings exactly as §5 asks (short forms for `\b \f \n \r \t`, `\u00xx`
/// with lowercase hex for other control characters, everything else as UTF-8), so strings go through it.
pub fn canonical_json(c: &Claims) -> String {
    let mut w = JsonWriter::default();
    w.string("jti", &c.jti);
    w.string("tid", &c.tid);
    w.int("iat", c.iat);
    w.int("exp", c.exp);
    w.string("prv", &c.prv);
    if let Some(key) = &c.key {
        w.string("key", key.expose());
    }
    if let Some(kref) = &c.kref {
        w.string("kref", kref);
    }
    if let Some(url) = &c.url {
        w.string("url", url);
    }
    if let Some(max) = c.max {
        w.int("max", max);
    }
    if let Some(ext) = &c.ext {
        w.open("ext");
        if let Some(m) = &ext.rep_m {
            w.string("rep_m", m);
        }
        w.close();
    }
    if let Some(rate) = c.rate {
        w.open("rate");
        w.int("n", rate.n);
        w.int("s", rate.s);
        w.close();
    }
    if let Some(conc) = c.conc {
        w.int("conc", u64::from(conc));
    }
    if let Some(models) = &c.models {
        w.strings("models", models.iter().map(String::as_str));
    }
    if let Some(paths) = &c.paths {
        w.strings("paths", paths.iter().map(String::as_str));
    }
    if let Some(origins) = &c.origins {
        w.strings("origins", origins.iter().map(String::as_str));
    }
    if let Some(ips) = &c.ips {
        let texts: Vec<String> = ips.iter().map(IpNet::to_string).collect();
        w.strings("ips", texts.iter().map(String::as_str));
    }
    if let Some(mtok) = c.mtok {
        w.int("mtok", mtok);
    }
    if let Some(mode) = c.mtok_mode {
        w.string("mtok_mode", mode.as_str());
    }
    if let Some(uid) = &c.uid {
        w.string("uid", uid);
    }
    if let Some(bud) = c.bud {
        w.open("bud");
        w.opt_int("tok", bud.tok);
        w.opt_int("cost", bud.cost);
        w.close();
    }
    if let Some(quotas) = &c.uq {
        // Entries in the order the minter was given: the order carries no meaning, but one input
        // must give one spelling (§5.1.21).
        w.name("uq");
        w.out.push('[');
        for (i, q) in quotas.iter().enumerate() {
            if i > 0 {
                w.out.push(',');
            }
            w.out.push('{');
            w.first = true;
            w.string("w", q.w.as_str());
            w.opt_int("calls", q.calls);
            w.opt_int("tok", q.tok);
            w.opt_int("cost", q.cost);
            w.close();
        }
        w.out.push(']');
    }
    w.opt_int("ssec", c.ssec);
    w.finish()
}

/// Writes one JSON object member by member, tracking where commas go.
struct JsonWriter {
    out: String,
    first: bool,
}

impl Default for JsonWriter {
    fn default() -> Self {
        JsonWriter {
            out: String::from("{"),
            first: true,
        }
    }
}

impl JsonWriter {
    fn name(&mut self, name: &str) {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        self.push_json_string(name);
        self.out.push(':');
    }

    fn push_json_string(&mut self, s: &str) {
        // Serialising a &str cannot fail: there is no map key or non-finite float involved.
        let quoted = Zeroizing::new(serde_json::to_string(s).unwrap_or_default());
        self.out.push_str(&quoted);
    }

    fn string(&mut self, name: &str, value: &str) {
        self.name(name);
        self.push_json_string(value);
    }

    fn int(&mut self, name: &str, value: u64) {
        self.name(name);
        self.out.push_str(&value.to_string());
    }

    fn opt_int(&mut self, name: &str, value: Option<u64>) {
        if let Some(v) = value {
            self.int(name, v);
        }
    }

    fn strings<'a>(&mut self, name: &str, values: impl Iterator<Item = &'a str>) {
        self.name(name);
        self.out.push('[');
        for (i, v) in values.enumerate() {
            if i > 0 {
                self.out.push(',');
            }
            self.push_json_string(v);
        }
        self.out.push(']');
    }

    fn open(&mut self, name: &str) {
        self.name(name);
        self.out.push('{');
        self.first = true;
    }

    fn close(&mut self) {
        self.out.push('}');
        self.first = false;
    }

    fn finish(mut self) -> String {
        self.out.push('}');
        std::mem::take(&mut self.out)
    }
}
