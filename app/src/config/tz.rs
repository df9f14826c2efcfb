//! Time zones for `[system] timezone`: a table of common IANA names with
//! their POSIX TZ strings, and a check of POSIX TZ strings themselves.
//!
//! The boards have no zoneinfo database (the image is small and read-only),
//! so the C library can only follow a POSIX TZ string such as
//! `CET-1CEST,M3.5.0,M10.5.0/3`. Owners think in IANA names, so the common
//! ones are translated here (each string is the last line of the zone's
//! tzdata file, i.e. its current rule); any other zone is given as its
//! POSIX string, which is checked so that nothing but a valid TZ value can
//! reach the boot scripts' environment.

/// Common IANA zones and their POSIX TZ strings (tzdata 2024).
pub const ZONES: &[(&str, &str)] = &[
    ("UTC", "UTC0"),
    ("Etc/UTC", "UTC0"),
    ("Europe/London", "GMT0BST,M3.5.0/1,M10.5.0"),
    ("Europe/Dublin", "IST-1GMT0,M10.5.0,M3.5.0/1"),
    ("Europe/Lisbon", "WET0WEST,M3.5.0/1,M10.5.0"),
    ("Atlantic/Canary", "WET0WEST,M3.5.0/1,M10.5.0"),
    ("Atlantic/Reykjavik", "GMT0"),
    ("Europe/Amsterdam", "CET-1CEST,M3.5.0,M10.5.0/3"),
    ("Europe/Berlin", "CET-1CEST,M3.5.0,M10.5.0/3"),
    ("Europe/Brussels", "CET-1CEST,M3.5.0,M10.5.0/3"),
    ("Europe/Budapest", "CET-1CEST,M3.5.0,M10.5.0/3"),
    ("Europe/Copenhagen", "CET-1CEST,M3.5.0,M10.5.0/3"),
    ("Europe/Madrid", "CET-1CEST,M3.5.0,M10.5.0/3"),
    ("Europe/Oslo", "CET-1CEST,M3.5.0,M10.5.0/3"),
    ("Europe/Paris", "CET-1CEST,M3.5.0,M10.5.0/3"),
    ("Europe/Prague", "CET-1CEST,M3.5.0,M10.5.0/3"),
    ("Europe/Rome", "CET-1CEST,M3.5.0,M10.5.0/3"),
    ("Europe/Stockholm", "CET-1CEST,M3.5.0,M10.5.0/3"),
    ("Europe/Vienna", "CET-1CEST,M3.5.0,M10.5.0/3"),
    ("Europe/Warsaw", "CET-1CEST,M3.5.0,M10.5.0/3"),
    ("Europe/Zurich", "CET-1CEST,M3.5.0,M10.5.0/3"),
    ("Europe/Athens", "EET-2EEST,M3.5.0/3,M10.5.0/4"),
    ("Europe/Bucharest", "EET-2EEST,M3.5.0/3,M10.5.0/4"),
    ("Europe/Helsinki", "EET-2EEST,M3.5.0/3,M10.5.0/4"),
    ("Europe/Kyiv", "EET-2EEST,M3.5.0/3,M10.5.0/4"),
    ("Europe/Riga", "EET-2EEST,M3.5.0/3,M10.5.0/4"),
    ("Europe/Sofia", "EET-2EEST,M3.5.0/3,M10.5.0/4"),
    ("Europe/Tallinn", "EET-2EEST,M3.5.0/3,M10.5.0/4"),
    ("Europe/Vilnius", "EET-2EEST,M3.5.0/3,M10.5.0/4"),
    ("Europe/Istanbul", "<+03>-3"),
    ("Europe/Minsk", "<+03>-3"),
    ("Europe/Moscow", "MSK-3"),
    ("Africa/Johannesburg", "SAST-2"),
    ("Africa/Lagos", "WAT-1"),
    ("Africa/Nairobi", "EAT-3"),
    ("Asia/Dubai", "<+04>-4"),
    ("Asia/Riyadh", "<+03>-3"),
    ("Asia/Jerusalem", "IST-2IDT,M3.4.4/26,M10.5.0"),
    ("Asia/Tehran", "<+0330>-3:30"),
    ("Asia/Karachi", "PKT-5"),
    ("Asia/Kolkata", "IST-5:30"),
    ("Asia/Kathmandu", "<+0545>-5:45"),
    ("Asia/Dhaka", "<+06>-6"),
    ("Asia/Bangkok", "<+07>-7"),
    ("Asia/Ho_Chi_Minh", "<+07>-7"),
    ("Asia/Jakarta", "WIB-7"),
    ("Asia/Shanghai", "CST-8"),
    ("Asia/Hong_Kong", "HKT-8"),
    ("Asia/Taipei", "CST-8"),
    ("Asia/Singapore", "<+08>-8"),
    ("Asia/Kuala_Lumpur", "<+08>-8"),
    ("Asia/Manila", "PST-8"),
    ("Asia/Seoul", "KST-9"),
    ("Asia/Tokyo", "JST-9"),
    ("Australia/Perth", "AWST-8"),
    ("Australia/Darwin", "ACST-9:30"),
    ("Australia/Adelaide", "ACST-9:30ACDT,M10.1.0,M4.1.0/3"),
    ("Australia/Brisbane", "AEST-10"),
    ("Australia/Sydney", "AEST-10AEDT,M10.1.0,M4.1.0/3"),
    ("Australia/Melbourne", "AEST-10AEDT,M10.1.0,M4.1.0/3"),
    ("Australia/Hobart", "AEST-10AEDT,M10.1.0,M4.1.0/3"),
    ("Pacific/Auckland", "NZST-12NZDT,M9.5.0,M4.1.0/3"),
    ("Pacific/Honolulu", "HST10"),
    ("America/Anchorage", "AKST9AKDT,M3.2.0,M11.1.0"),
    ("America/Los_Angeles", "PST8PDT,M3.2.0,M11.1.0"),
    ("America/Vancouver", "PST8PDT,M3.2.0,M11.1.0"),
    ("America/Denver", "MST7MDT,M3.2.0,M11.1.0"),
    ("America/Edmonton", "MST7MDT,M3.2.0,M11.1.0"),
    ("America/Phoenix", "MST7"),
    ("America/Chicago", "CST6CDT,M3.2.0,M11.1.0"),
    ("America/Winnipeg", "CST6CDT,M3.2.0,M11.1.0"),
    ("America/Mexico_City", "CST6"),
    ("America/New_York", "EST5EDT,M3.2.0,M11.1.0"),
    ("America/Toronto", "EST5EDT,M3.2.0,M11.1.0"),
    ("America/Halifax", "AST4ADT,M3.2.0,M11.1.0"),
    ("America/St_Johns", "NST3:30NDT,M3.2.0,M11.1.0"),
    ("America/Puerto_Rico", "AST4"),
    ("America/Bogota", "<-05>5"),
    ("America/Lima", "<-05>5"),
    ("America/Caracas", "<-04>4"),
    ("America/Santiago", "<-04>4<-03>,M9.1.6/24,M4.1.6/24"),
    ("America/Sao_Paulo", "<-03>3"),
    ("America/Argentina/Buenos_Aires", "<-03>3"),
];

/// Longest TZ value accepted (the longest in the table is 33 characters).
const MAX_TZ: usize = 64;

/// The POSIX TZ string for `value`: a name of [`ZONES`], or a valid POSIX
/// TZ string as it is; `Err` says why neither.
pub fn posix(value: &str) -> Result<String, String> {
    if let Some((_, tz)) = ZONES.iter().find(|(name, _)| *name == value) {
        return Ok((*tz).to_owned());
    }
    if value.contains('/') && !value.contains(',') {
        return Err(format!(
            "`{value}` is not a time zone this box knows (it has no zoneinfo database); \
             use one of the {} common zones (docs/config.md lists them, e.g. Europe/Berlin) \
             or the zone's POSIX TZ string, e.g. \"CET-1CEST,M3.5.0,M10.5.0/3\"",
            ZONES.len()
        ));
    }
    check_posix(value)
        .map(|()| value.to_owned())
        .map_err(|why| {
            format!("`{value}` is neither a known zone name nor a POSIX TZ string: {why}")
        })
}

/// A cursor over a TZ string.
struct Tz<'a> {
    s: &'a [u8],
    at: usize,
}

impl Tz<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.at).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        let hit = self.peek() == Some(b);
        if hit {
            self.at += 1;
        }
        hit
    }

    /// A zone abbreviation: 3 or more letters, or `<...>` of 3 or more
    /// letters, digits, `+` and `-`.
    fn name(&mut self, what: &str) -> Result<(), String> {
        let start = self.at;
        if self.eat(b'<') {
            while self
                .peek()
                .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-')
            {
                self.at += 1;
            }
            if self.at - start - 1 < 3 || !self.eat(b'>') {
                return Err(format!(
                    "the {what} name in <...> needs 3 or more letters, digits, + or -"
                ));
            }
        } else {
            while self.peek().is_some_and(|b| b.is_ascii_alphabetic()) {
                self.at += 1;
            }
            if self.at - start < 3 {
                return Err(format!("the {what} name needs 3 or more letters"));
            }
        }
        Ok(())
    }

    /// A number of at most `digits` digits, at most `max`.
    fn number(&mut self, digits: usize, max: u32, what: &str) -> Result<u32, String> {
        let start = self.at;
        while self.peek().is_some_and(|b| b.is_ascii_digit()) && self.at - start < digits {
            self.at += 1;
        }
        let text = std::str::from_utf8(&self.s[start..self.at]).unwrap_or("");
        match text.parse::<u32>() {
            Ok(n) if n <= max => Ok(n),
            _ => Err(format!("{what} must be a number up to {max}")),
        }
    }

    /// `[+-]hh[:mm[:ss]]`, hours up to `max_hours`.
    fn offset(&mut self, max_hours: u32, what: &str) -> Result<(), String> {
        let _ = self.eat(b'+') || self.eat(b'-');
        self.number(3, max_hours, what)?;
        if self.eat(b':') {
            self.number(2, 59, "minutes")?;
            if self.eat(b':') {
                self.number(2, 59, "seconds")?;
            }
        }
        Ok(())
    }

    /// `Jn`, `n` or `Mm.w.d`, then an optional `/time`.
    fn date(&mut self) -> Result<(), String> {
        if self.eat(b'J') {
            if self.number(3, 365, "a Julian day")? == 0 {
                return Err("a Julian day Jn counts from 1".into());
            }
        } else if self.eat(b'M') {
            if self.number(2, 12, "the month")? == 0 {
                return Err("the month counts from 1".into());
            }
            if !self.eat(b'.') || self.number(1, 5, "the week")? == 0 || !self.eat(b'.') {
                return Err("a rule date is Mm.w.d (month, week 1-5, weekday 0-6)".into());
            }
            self.number(1, 6, "the weekday")?;
        } else {
            self.number(3, 365, "a day of the year")?;
        }
        if self.eat(b'/') {
            self.offset(167, "the change's hour")?;
        }
        Ok(())
    }
}

/// Checks a POSIX TZ string: `std offset [dst [offset] [,start[/time],end[/time]]]`.
fn check_posix(value: &str) -> Result<(), String> {
    if value.is_empty() || value.len() > MAX_TZ {
        return Err(format!("it must be 1 to {MAX_TZ} characters"));
    }
    let mut tz = Tz {
        s: value.as_bytes(),
        at: 0,
    };
    tz.name("standard time")?;
    tz.offset(24, "the offset from UTC in hours")?;
    if tz.peek().is_some() {
        tz.name("summer time")?;
        if tz
            .peek()
            .is_some_and(|b| b.is_ascii_digit() || b == b'+' || b == b'-')
        {
            tz.offset(24, "the summer offset in hours")?;
        }
        if tz.eat(b',') {
            tz.date()?;
            if !tz.eat(b',') {
                return Err("the rule needs a start and an end: ,start,end".into());
            }
            tz.date()?;
        }
    }
    match tz.peek() {
        None => Ok(()),
        Some(_) => Err(format!(
            "unexpected `{}` at character {}",
            &value[tz.at..],
            tz.at + 1
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_zone_of_the_table_is_a_valid_posix_string_and_unique() {
        for (i, (name, tz)) in ZONES.iter().enumerate() {
            assert_eq!(check_posix(tz), Ok(()), "{name}: {tz}");
            assert!(!ZONES[..i].iter().any(|(n, _)| n == name), "{name} twice");
            assert_eq!(posix(name).as_deref(), Ok(*tz));
        }
        assert_eq!(
            posix("Europe/Berlin").unwrap(),
            "CET-1CEST,M3.5.0,M10.5.0/3"
        );
        assert_eq!(posix("America/New_York").unwrap(), "EST5EDT,M3.2.0,M11.1.0");
    }

    #[test]
    fn posix_strings_pass_and_mistakes_say_why() {
        for ok in [
            "UTC0",
            "EST5",
            "<+0545>-5:45",
            "CET-1CEST",
            "NZST-12NZDT,M9.5.0,M4.1.0/3",
            "IST-2IDT,M3.4.4/26,M10.5.0",
            "AAA3BBB,J60/2,300/-1:30",
        ] {
            assert_eq!(check_posix(ok), Ok(()), "{ok}");
            assert_eq!(posix(ok).as_deref(), Ok(ok));
        }
        for (bad, why) in [
            ("Europe/Atlantis", "not a time zone this box knows"),
            ("XYZ", "offset from UTC"),
            ("CE-1", "3 or more letters"),
            ("CET-25", "up to 24"),
            ("CET-1CEST,M13.5.0,M10.5.0", "the month"),
            ("CET-1CEST,M3.5.0", "start and an end"),
            ("CET-1CEST,M3.6.0,M10.5.0", "the week"),
            ("CET-1CEST,M3.5.0,M10.5.0/3x", "unexpected `x`"),
            ("CET-1;reboot", "summer time name"),
            ("CET-1CEST'x", "unexpected `'x`"),
            ("<ab>1", "3 or more"),
        ] {
            let e = posix(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert!(posix(&format!("AAA{}", "1".repeat(70))).is_err());
    }
}
