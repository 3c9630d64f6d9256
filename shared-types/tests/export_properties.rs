//! Property tests of the CSV exports: any text survives quoting (read back by a plain RFC 4180
//! parser, only the formula guard added), no field a spreadsheet would run is left unguarded, the
//! exported per-hour USD of a key sums exactly to its total, and times match chrono's RFC 3339.

use proptest::prelude::*;
use shared_types::cost::TokenCounts;
use shared_types::export::{
    key_costs_header, parse_sample_rows, push_rfc3339, sum_periods, write_key_cost_rows, CsvWriter, Granularity, KeyCostCursor, KeyCostRow, SampleRow,
};
use shared_types::{KeyId, MicroUsd};

/// A plain RFC 4180 reader: records of fields; quoted fields may hold commas, CR, LF and doubled
/// quotes. Written independently of the writer, as a spreadsheet would read the file.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = vec![];
    let mut record = vec![];
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut in_quotes = false;
    while let Some(c) = chars.next() {
        if in_quotes {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => in_quotes = false,
                c => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() => in_quotes = true,
            ',' => record.push(std::mem::take(&mut field)),
            '\r' if chars.peek() == Some(&'\n') => {
                chars.next();
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            c => field.push(c),
        }
    }
    assert!(!in_quotes && field.is_empty() && record.is_empty(), "text ends inside a record: {text:?}");
    records
}

const FORMULA_LEADS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// Text as others might choose it: any characters, with the troublesome ones often.
fn hostile_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        proptest::collection::vec(prop_oneof![Just('='), Just('+'), Just('-'), Just('@'), Just('"'), Just(','), Just('\r'), Just('\n'), Just('\t'), Just('\''), Just('a'), Just('é'), Just(' ')], 0..12)
            .prop_map(|chars| chars.into_iter().collect()),
    ]
}

proptest! {
    #[test]
    fn any_text_round_trips_with_only_the_formula_guard_added(rows in proptest::collection::vec(proptest::collection::vec(hostile_text(), 1..6), 1..5)) {
        let mut w = CsvWriter::default();
        for row in &rows {
            for field in row {
                w.text(field);
            }
            w.end_row();
        }
        let parsed = parse_csv(&w.finish());
        prop_assert_eq!(parsed.len(), rows.len());
        for (written, read) in rows.iter().zip(&parsed) {
            prop_assert_eq!(written.len(), read.len());
            for (original, cell) in written.iter().zip(read) {
                if original.starts_with(FORMULA_LEADS) {
                    // A spreadsheet shows the cell as text: the guard, then the original.
                    prop_assert_eq!(cell.strip_prefix('\''), Some(original.as_str()));
                } else {
                    prop_assert_eq!(cell, original);
                }
                prop_assert!(!cell.starts_with(FORMULA_LEADS), "a cell a spreadsheet would run: {:?}", cell);
            }
        }
    }

    #[test]
    fn exported_hourly_usd_sums_exactly_to_the_keys_total(
        costs in proptest::collection::vec((0u64..3, 0i64..2_000_000_000_000), 0..200),
        name in hostile_text(),
    ) {
        let rows: Vec<KeyCostRow> = costs
            .iter()
            .enumerate()
            .map(|(h, (key, cost))| KeyCostRow { key: KeyId(*key + 1), period_start: 1_764_000_000 + h as i64 * 3600, tokens: TokenCounts { output: h as u64, ..TokenCounts::default() }, cost: MicroUsd(*cost) })
            .collect();
        let mut w = CsvWriter::default();
        w.header(&key_costs_header(Granularity::Hour));
        write_key_cost_rows(&mut w, &rows, |_| name.clone());
        let parsed = parse_csv(&w.finish());
        prop_assert_eq!(parsed.len(), rows.len() + 1);
        for key in 1..=3u64 {
            let total: i64 = rows.iter().filter(|r| r.key == KeyId(key)).map(|r| r.cost.0).sum();
            let exported: i64 = parsed[1..]
                .iter()
                .filter(|record| record[0] == key.to_string())
                .map(|record| MicroUsd::parse_usd(&record[9]).expect("an exact USD decimal").0)
                .sum();
            prop_assert_eq!(exported, total, "key {}", key);
        }
    }

    #[test]
    fn database_text_parses_back_exactly(rows in proptest::collection::vec(proptest::array::uniform9(any::<i64>()), 0..20)) {
        // `i64::MIN` has no positive counterpart in the text SQLite writes; stored values are far from it.
        let rows: Vec<SampleRow> = rows.into_iter().map(|r| r.map(|v| v.max(-i64::MAX))).collect();
        let text = rows.iter().map(|r| r.iter().map(i64::to_string).collect::<Vec<_>>().join(",")).collect::<Vec<_>>().join(";");
        prop_assert_eq!(parse_sample_rows(&text).unwrap(), rows);
    }

    #[test]
    fn written_integers_and_money_match_the_standard_formatting(n in any::<i64>(), u in any::<u64>(), m in any::<i64>()) {
        let mut w = CsvWriter::default();
        w.int(n);
        w.int(u);
        w.usd(MicroUsd(m));
        w.end_row();
        prop_assert_eq!(w.finish(), format!("{n},{u},{}\r\n", MicroUsd(m).format_usd()));
    }

    #[test]
    fn times_match_chrono(secs in -62_167_219_200i64..253_402_300_800) {
        let mut ours = String::new();
        push_rfc3339(&mut ours, secs);
        let theirs = chrono::DateTime::from_timestamp(secs, 0).unwrap().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        prop_assert_eq!(ours, theirs);
    }

    #[test]
    fn paging_through_stored_rows_exports_each_period_once_with_exact_totals(
        raw in proptest::collection::vec((1i64..4, 0i64..72, 0i64..3, 0i64..1_000_000, 0i64..10_000_000), 0..300),
        day in any::<bool>(),
        limit in 1usize..40,
    ) {
        let granularity = if day { Granularity::Day } else { Granularity::Hour };
        // The table: one row per (key, hour, model), in primary-key order, as SQLite keeps it.
        let mut table: Vec<SampleRow> = raw
            .iter()
            .map(|&(key, hour, model, output, cost)| [key, 1_764_000_000 + hour * 3600, model, 0, 0, 0, output, 0, cost])
            .collect();
        table.sort_by_key(|s| (s[0], s[1], s[2]));
        table.dedup_by_key(|s| (s[0], s[1], s[2]));
        for s in &mut table {
            s[2] = 1; // the model was only part of the key; every row has one uncached input token
        }
        // Chunks as the issuer reads them: rows at or after the cursor, `limit` at a time.
        let mut exported: Vec<KeyCostRow> = vec![];
        let mut cursor = KeyCostCursor::START;
        loop {
            let at = table.partition_point(|s| (s[0], s[1]) < (cursor.key.0 as i64, cursor.from));
            let page = &table[at..table.len().min(at + limit)];
            let more = at + page.len() < table.len();
            let mut chunk = sum_periods(page.to_vec(), granularity, more).unwrap();
            if let Some(stuck) = chunk.stuck_at() {
                // A period larger than a chunk is read alone.
                let end = stuck.from + granularity.secs();
                let whole: Vec<SampleRow> = table.iter().filter(|s| s[0] == stuck.key.0 as i64 && s[1] >= stuck.from && s[1] < end).copied().collect();
                let rest = table.iter().any(|s| (s[0], s[1]) >= (stuck.key.0 as i64, end));
                chunk = sum_periods(whole, granularity, false).unwrap();
                chunk.next = rest.then_some(KeyCostCursor { key: stuck.key, from: end });
            }
            exported.extend(chunk.rows);
            match chunk.next {
                Some(next) => { prop_assert!((next.key, next.from) > (cursor.key, cursor.from), "progress"); cursor = next; }
                None => break,
            }
        }
        // Every period once, in order; each key's tokens and cost add up exactly.
        let periods: Vec<_> = exported.iter().map(|r| (r.key, r.period_start)).collect();
        let mut unique = periods.clone();
        unique.dedup();
        prop_assert_eq!(&periods, &unique);
        prop_assert!(periods.windows(2).all(|w| w[0] < w[1]));
        for key in 1..4i64 {
            let rows = table.iter().filter(|s| s[0] == key);
            let (cost, tokens): (i64, u64) = rows.fold((0, 0), |(c, t), s| (c + s[8], t + s[6] as u64));
            let ours = exported.iter().filter(|r| r.key.0 == key as u64);
            let (our_cost, our_tokens) = ours.fold((0, 0), |(c, t), r| (c + r.cost.0, t + r.tokens.output));
            prop_assert_eq!((our_cost, our_tokens), (cost, tokens), "key {}", key);
        }
        prop_assert_eq!(exported.iter().map(|r| r.tokens.uncached_input).sum::<u64>(), table.len() as u64);
    }
}
