use super::*;
use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, TimestampMicrosecondType};

fn cols(spec: &[(&str, &str)]) -> Vec<Column> {
    spec.iter().map(|(n, t)| Column::new(*n, HiveType::parse(t).unwrap())).collect()
}

fn openx() -> Deserializer {
    Deserializer::default()
}

fn hive(formats: &[&str]) -> Deserializer {
    Deserializer::Hive { timestamp_formats: formats.iter().map(|f| TimestampFormat::parse(f).unwrap()).collect() }
}

#[test]
fn converts_primitives_case_insensitively_and_drops_unknown_keys() {
    let mut c = JsonConverter::new(
        &cols(&[("id", "bigint"), ("name", "string"), ("ok", "boolean"), ("score", "double"), ("n", "tinyint")]),
        &openx(),
    );
    assert_eq!(
        c.push_record(br#"{"ID": 7, "Name": "a", "ok": true, "score": 1.5, "extra": {"x": [1]}, "n": -3}"#).unwrap(),
        1
    );
    assert_eq!(c.push_record(br#"{"id": "8", "name": 12.50, "ok": "TRUE"}"#).unwrap(), 1);
    let b = c.flush().unwrap();
    assert_eq!(b.num_rows(), 2);
    assert_eq!(b.column(0).as_primitive::<Int64Type>().values(), &[7, 8]);
    let names = b.column(1).as_string::<i32>();
    assert_eq!((names.value(0), names.value(1)), ("a", "12.50"));
    assert!(b.column(2).as_boolean().value(1));
    assert!(b.column(3).is_null(1) && b.column(4).is_null(1));
}

#[test]
fn bad_records_are_rolled_back_and_reported() {
    let mut c = JsonConverter::new(&cols(&[("a", "int"), ("s", "struct<x:int,y:array<int>>")]), &openx());
    c.push_record(br#"{"a": 1, "s": {"x": 1, "y": [1, 2]}}"#).unwrap();
    let cases: [(&[u8], &str, &str); 7] = [
        (b"", MALFORMED_DATA, "empty or contained only whitespace"),
        (b"  \n", MALFORMED_DATA, "empty"),
        (b"{\"a\": ", PARSE_ERROR, "malformed JSON"),
        (b"42", MALFORMED_DATA, "primitive at the top level"),
        (br#"{"a": "oops"}"#, MALFORMED_DATA, "For input string: \"oops\""),
        (br#"{"a": 3000000000}"#, MALFORMED_DATA, "Value out of range"),
        (br#"{"a": 2, "s": {"x": 1, "y": [1, "z"]}}"#, MALFORMED_DATA, "For input string: \"z\""),
    ];
    for (input, code, text) in cases {
        let e = c.push_record(input).unwrap_err();
        assert_eq!(e.code, code, "{}", String::from_utf8_lossy(input));
        assert!(e.message.contains(text), "{}: {}", String::from_utf8_lossy(input), e.message);
    }
    c.push_record(br#"{"a": 3}{"a": 4, "s": null}"#).unwrap();
    let b = c.flush().unwrap();
    assert_eq!(b.num_rows(), 3);
    assert_eq!(b.column(0).as_primitive::<Int32Type>().values(), &[1, 3, 4]);
    let s = b.column(1).as_struct();
    let y = s.column(1).as_list::<i32>();
    assert_eq!(y.value(0).as_primitive::<Int32Type>().values(), &[1, 2]);
    assert!(s.is_null(2));
    assert_eq!(y.values().len(), 2, "the failed record's list items are gone");
}

#[test]
fn hive_refuses_numeric_strings_and_stringified_objects() {
    let mut c = JsonConverter::new(&cols(&[("a", "int"), ("s", "string")]), &hive(&[]));
    assert!(c.push_record(br#"{"a": "123"}"#).is_err());
    assert!(c.push_record(br#"{"s": {"x": 1}}"#).is_err());
    c.push_record(br#"{"A": 5, "s": 1}"#).unwrap();
    let b = c.flush().unwrap();
    assert_eq!(b.column(0).as_primitive::<Int32Type>().value(0), 5);
    let mut o = JsonConverter::new(&cols(&[("s", "string")]), &openx());
    o.push_record(br#"{"s": {"x": [1, 2]}}"#).unwrap();
    assert_eq!(o.flush().unwrap().column(0).as_string::<i32>().value(0), r#"{"x": [1, 2]}"#);
}

#[test]
fn openx_options() {
    let d = Deserializer::OpenX {
        case_insensitive: false,
        column_to_json_key: HashMap::from([("ts".to_string(), "timestamp".to_string())]),
        dots_to_underscores: true,
    };
    let mut c = JsonConverter::new(&cols(&[("ts", "bigint"), ("a_b", "int"), ("x", "int")]), &d);
    c.push_record(br#"{"timestamp": 5, "a.b": 6, "X": 7}"#).unwrap();
    let b = c.flush().unwrap();
    assert_eq!(b.column(0).as_primitive::<Int64Type>().value(0), 5);
    assert_eq!(b.column(1).as_primitive::<Int32Type>().value(0), 6);
    assert!(b.column(2).is_null(0), "case-sensitive: X is not x");
}

#[test]
fn timestamps_dates_and_decimals() {
    let mut c = JsonConverter::new(&cols(&[("t", "timestamp"), ("d", "date"), ("m", "decimal(5,2)")]), &openx());
    let inputs = [
        r#"{"t": "2020-09-03T09:02:39.123Z", "d": "2020-09-03", "m": 12.345}"#,
        r#"{"t": "2020-9-3 09:02:39", "m": "-1.005"}"#,
        r#"{"t": 1599123759, "m": 1234.5}"#,
        r#"{"t": 1599123759123, "m": 0.001}"#,
        r#"{"t": 1599123759.5, "m": 1e2}"#,
    ];
    for i in inputs {
        c.push_record(i.as_bytes()).unwrap();
    }
    assert!(c.push_record(br#"{"t": "2020-09-03T09:02:39+00:00"}"#).is_err(), "offsets are refused by OpenX");
    let b = c.flush().unwrap();
    let t = b.column(0).as_primitive::<TimestampMicrosecondType>();
    assert_eq!(t.value(0), 1_599_123_759_123_000);
    assert_eq!(t.value(1), 1_599_123_759_000_000);
    assert_eq!(t.value(2), 1_599_123_759_000_000);
    assert_eq!(t.value(3), 1_599_123_759_123_000);
    assert_eq!(t.value(4), 1_599_123_759_500_000);
    assert_eq!(b.column(1).as_primitive::<arrow_array::types::Date32Type>().value(0), 18508);
    let m = b.column(2).as_primitive::<Decimal128Type>();
    assert_eq!(m.value(0), 1235, "half-up rounding");
    assert_eq!(m.value(1), -101);
    assert!(m.is_null(2), "1234.50 does not fit decimal(5,2)");
    assert_eq!(m.value(3), 0);
    assert_eq!(m.value(4), 10000);
}

#[test]
fn hive_timestamp_formats() {
    let mut c = JsonConverter::new(
        &cols(&[("t", "timestamp")]),
        &hive(&["millis", "dd/MM/yyyy HH:mm:ss.SSS", "yyyy-MM-dd'T'HH:mm:ssZZ"]),
    );
    c.push_record(br#"{"t": 1599123759123}"#).unwrap();
    c.push_record(br#"{"t": "03/09/2020 09:02:39.123"}"#).unwrap();
    c.push_record(br#"{"t": "2020-09-03T11:02:39+02:00"}"#).unwrap();
    c.push_record(br#"{"t": "2020-09-03 09:02:39"}"#).unwrap();
    assert!(c.push_record(br#"{"t": "yesterday"}"#).is_err());
    let b = c.flush().unwrap();
    let t = b.column(0).as_primitive::<TimestampMicrosecondType>();
    assert_eq!(
        t.values(),
        &[1_599_123_759_123_000, 1_599_123_759_123_000, 1_599_123_759_000_000, 1_599_123_759_000_000]
    );
}

#[test]
fn maps_chars_binary() {
    let mut c = JsonConverter::new(
        &cols(&[("m", "map<int,string>"), ("c", "char(3)"), ("v", "varchar(2)"), ("b", "binary")]),
        &hive(&[]),
    );
    c.push_record(br#"{"m": {"1": "a", "2": null}, "c": "x", "v": "hello", "b": "AAE="}"#).unwrap();
    assert!(c.push_record(br#"{"m": {"x": "a"}}"#).is_err());
    let b = c.flush().unwrap();
    let m = b.column(0).as_map();
    assert_eq!(m.keys().as_primitive::<Int32Type>().values(), &[1, 2]);
    assert!(m.values().is_null(1));
    assert_eq!(b.column(1).as_string::<i32>().value(0), "x  ");
    assert_eq!(b.column(2).as_string::<i32>().value(0), "he");
    assert_eq!(b.column(3).as_binary::<i32>().value(0), &[0, 1]);
    let mut o = JsonConverter::new(&cols(&[("b", "binary")]), &openx());
    assert_eq!(o.push_record(br#"{}"#).unwrap_err().code, INVALID_SCHEMA);
}

#[test]
fn duplicate_keys_keep_the_first_value() {
    let mut c = JsonConverter::new(&cols(&[("a", "int")]), &openx());
    c.push_record(br#"{"a": 1, "A": 2}"#).unwrap();
    assert_eq!(c.flush().unwrap().column(0).as_primitive::<Int32Type>().value(0), 1);
}

#[test]
fn decimal_parsing() {
    assert_eq!(parse_decimal("12.345", 5, 2), Some(Some(1235)));
    assert_eq!(
        parse_decimal("99999999999999999999999999999999999999", 38, 0),
        Some(Some(99999999999999999999999999999999999999))
    );
    assert_eq!(parse_decimal("1e-5", 5, 2), Some(Some(0)));
    assert_eq!(parse_decimal("0.005", 5, 2), Some(Some(1)));
    assert_eq!(parse_decimal("abc", 5, 2), None);
    assert_eq!(parse_decimal(".", 5, 2), None);
    assert_eq!(parse_decimal("999.995", 5, 2), Some(None));
}

#[test]
fn fast_timestamps_agree_with_the_general_parser() {
    for s in [
        "2020-09-03 09:02:39",
        "2020-02-29 23:59:59.999999",
        "1969-12-31 23:59:59.5",
        "2000-01-01 00:00:00.123456789",
        "1600-03-01 12:00:00",
    ] {
        assert_eq!(fast_timestamp(s.as_bytes(), false), parse_timestamp_valueof(s), "{s}");
        let iso = s.replace(' ', "T") + "Z";
        assert_eq!(fast_timestamp(iso.as_bytes(), true), parse_timestamp_valueof(s), "{iso}");
    }
    for bad in [
        "2021-02-29 00:00:00",
        "2020-13-01 00:00:00",
        "2020-01-01 24:00:00",
        "2020-01-01T00:00:00",
        "2020-01-01 00:00:00.",
    ] {
        assert_eq!(fast_timestamp(bad.as_bytes(), false), None, "{bad}");
    }
}

#[test]
fn escaped_and_unicode_keys_match() {
    let mut c = JsonConverter::new(&cols(&[("name", "string"), ("größe", "int")]), &openx());
    c.push_record(br#"{"n\u0061me": "x", "GR\u00d6\u00dfE": 1}"#).unwrap();
    c.push_record("{\"Größe\": 2}".as_bytes()).unwrap();
    let b = c.flush().unwrap();
    assert_eq!(b.column(0).as_string::<i32>().value(0), "x");
    assert_eq!(b.column(1).as_primitive::<Int32Type>().values(), &[1, 2]);
}

#[test]
fn single_object_mode_refuses_concatenated_objects() {
    let mut c = JsonConverter::new(&cols(&[("a", "int")]), &openx()).with_single_object();
    c.push_record(b"{\"a\": 1}\n").unwrap();
    assert!(c.push_record(b"{\"a\": 1}{\"a\": 2}").is_err());
    assert_eq!(c.flush().unwrap().num_rows(), 1);
}
