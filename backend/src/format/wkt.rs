//! DuckDB's GEOMETRY reaches Arrow as well-known binary (WKB); the text
//! formats write it as DuckDB does, as well-known text (WKT): `POINT (1 2)`,
//! `LINESTRING EMPTY`, `MULTIPOINT (5 6, EMPTY)`, `POINT Z (1 2 3)`.

/// The WKT of a WKB value; `None` when the bytes are not WKB.
pub fn wkt(wkb: &[u8]) -> Option<String> {
    let mut reader = Reader { bytes: wkb, at: 0 };
    let mut out = String::with_capacity(wkb.len() * 2);
    reader.geometry(&mut out, true)?;
    (reader.at == wkb.len()).then_some(out)
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

/// Kinds of WKB geometry (ISO codes 1-7).
const NAMES: [&str; 7] = [
    "POINT",
    "LINESTRING",
    "POLYGON",
    "MULTIPOINT",
    "MULTILINESTRING",
    "MULTIPOLYGON",
    "GEOMETRYCOLLECTION",
];

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let bytes = self.bytes.get(self.at..self.at + N)?;
        self.at += N;
        bytes.try_into().ok()
    }

    fn u32(&mut self, little: bool) -> Option<u32> {
        let b = self.take::<4>()?;
        Some(if little {
            u32::from_le_bytes(b)
        } else {
            u32::from_be_bytes(b)
        })
    }

    fn f64(&mut self, little: bool) -> Option<f64> {
        let b = self.take::<8>()?;
        Some(if little {
            f64::from_le_bytes(b)
        } else {
            f64::from_be_bytes(b)
        })
    }

    fn coords(&mut self, little: bool, dims: usize) -> Option<Vec<f64>> {
        (0..dims).map(|_| self.f64(little)).collect()
    }

    /// One geometry; `tagged` writes its name (members of a MULTI* are
    /// written without theirs).
    fn geometry(&mut self, out: &mut String, tagged: bool) -> Option<()> {
        let little = match self.take::<1>()?[0] {
            0 => false,
            1 => true,
            _ => return None,
        };
        let code = self.u32(little)?;
        // ISO (1001 Z, 2001 M, 3001 ZM) and EWKB's high flag bits.
        let (z, m) = (
            code & 0x8000_0000 != 0 || matches!((code & 0xffff) / 1000, 1 | 3),
            code & 0x4000_0000 != 0 || matches!((code & 0xffff) / 1000, 2 | 3),
        );
        let kind = (code & 0xffff) % 1000;
        let name = *NAMES.get((kind as usize).checked_sub(1)?)?;
        let dims = 2 + usize::from(z) + usize::from(m);
        if tagged {
            out.push_str(name);
            match (z, m) {
                (true, true) => out.push_str(" ZM"),
                (true, false) => out.push_str(" Z"),
                (false, true) => out.push_str(" M"),
                _ => {}
            }
            out.push(' ');
        }
        match kind {
            // A MULTIPOINT's members are bare coordinates: (5 6, EMPTY).
            1 => self.point(out, little, dims, tagged),
            2 => self.points(out, little, dims),
            3 => self.rings(out, little, dims),
            4..=7 => {
                let n = self.u32(little)?;
                if n == 0 {
                    out.push_str("EMPTY");
                    return Some(());
                }
                out.push('(');
                for i in 0..n {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    self.geometry(out, kind == 7)?;
                }
                out.push(')');
                Some(())
            }
            _ => None,
        }
    }

    /// A point's coordinates (in parentheses when `parens`); all NaN is
    /// `EMPTY`.
    fn point(&mut self, out: &mut String, little: bool, dims: usize, parens: bool) -> Option<()> {
        let coords = self.coords(little, dims)?;
        if coords.iter().all(|c| c.is_nan()) {
            out.push_str("EMPTY");
        } else if parens {
            out.push('(');
            write_coords(out, &coords);
            out.push(')');
        } else {
            write_coords(out, &coords);
        }
        Some(())
    }

    fn points(&mut self, out: &mut String, little: bool, dims: usize) -> Option<()> {
        let n = self.u32(little)?;
        if n == 0 {
            out.push_str("EMPTY");
            return Some(());
        }
        out.push('(');
        for i in 0..n {
            if i > 0 {
                out.push_str(", ");
            }
            let coords = self.coords(little, dims)?;
            write_coords(out, &coords);
        }
        out.push(')');
        Some(())
    }

    fn rings(&mut self, out: &mut String, little: bool, dims: usize) -> Option<()> {
        let n = self.u32(little)?;
        if n == 0 {
            out.push_str("EMPTY");
            return Some(());
        }
        out.push('(');
        for i in 0..n {
            if i > 0 {
                out.push_str(", ");
            }
            self.points(out, little, dims)?;
        }
        out.push(')');
        Some(())
    }
}

fn write_coords(out: &mut String, coords: &[f64]) {
    for (i, c) in coords.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        // Rust's shortest round-trip form: `1`, `0.5`, `-2.25`.
        out.push_str(&c.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(x: f64, y: f64) -> Vec<u8> {
        let mut b = vec![1, 1, 0, 0, 0];
        b.extend(x.to_le_bytes());
        b.extend(y.to_le_bytes());
        b
    }

    #[test]
    fn points_lines_and_collections_read_as_duckdb_writes_them() {
        assert_eq!(wkt(&point(1.0, 2.5)).as_deref(), Some("POINT (1 2.5)"));
        assert_eq!(
            wkt(&point(f64::NAN, f64::NAN)).as_deref(),
            Some("POINT EMPTY")
        );
        // A big-endian line of two points.
        let mut line = vec![0, 0, 0, 0, 2, 0, 0, 0, 2];
        for c in [0.0f64, 0.0, 1.0, -1.0] {
            line.extend(c.to_be_bytes());
        }
        assert_eq!(wkt(&line).as_deref(), Some("LINESTRING (0 0, 1 -1)"));
        let mut multi = vec![1, 4, 0, 0, 0, 2, 0, 0, 0];
        multi.extend(point(5.0, 6.0));
        multi.extend(point(f64::NAN, f64::NAN));
        assert_eq!(wkt(&multi).as_deref(), Some("MULTIPOINT (5 6, EMPTY)"));
        let mut collection = vec![1, 7, 0, 0, 0, 2, 0, 0, 0];
        collection.extend(point(5.0, 6.0));
        collection.extend([1, 3, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            wkt(&collection).as_deref(),
            Some("GEOMETRYCOLLECTION (POINT (5 6), POLYGON EMPTY)")
        );
        let mut z = vec![1, 0xe9, 0x03, 0, 0];
        for c in [1.0f64, 2.0, 3.0] {
            z.extend(c.to_le_bytes());
        }
        assert_eq!(wkt(&z).as_deref(), Some("POINT Z (1 2 3)"));
        assert_eq!(wkt(&[1, 1, 0]), None);
        assert_eq!(wkt(&[]), None);
        let mut trailing = point(1.0, 2.0);
        trailing.push(0);
        assert_eq!(wkt(&trailing), None);
    }
}
