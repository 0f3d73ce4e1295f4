//! Table definitions: the local stand-ins for the Glue tables that Firehose's
//! `DataFormatConversionConfiguration.SchemaConfiguration` names (`DatabaseName`, `TableName`).
//!
//! Owns reading a definition into a [`TableDefinition`], from a Hive / Athena `CREATE TABLE`
//! statement ([`parse_ddl`]) or from JSON ([`parse_json`]: an `aws glue get-table` response, a Glue
//! `TableInput`, a plain `{"columns": [...]}` object or a bare column list), and the
//! [`TableRegistry`] that finds a table by database and name. It never touches the network: there
//! is no cloud catalog behind it.
//!
//! Where tables come from, first match wins:
//! 1. `[[tables]]` entries of spillway.toml ([`TableSource`]: a file, or inline DDL text), read once
//!    at start-up; a broken entry fails start-up.
//! 2. Files in `<data-dir>/tables/`, read again at every lookup, so a table added with
//!    `spillway tables add` while the server runs is found without a restart:
//!
//!    ```text
//!    <data-dir>/tables/
//!      kinesislab/            one folder per database: its name, lower-cased, is the database
//!        nyctaxitrips.sql     Hive DDL (.sql, .hql or .ddl); an unqualified name belongs to the folder's database
//!        clicks.json          JSON; without a name inside, the table is named after the file
//!      orders.sql             directly in tables/: the database its DDL / JSON names, else "default"
//!    ```
//!
//!    Names starting with `.` (the temporary files of [`TableRegistry::add`]), other extensions and
//!    deeper folders are ignored.
//!
//! Invariants: database, table and column names are lower-case (Glue stores them so, and lookups
//! are case-insensitive); a definition has at least one column, and no name appears twice among its
//! columns and partition keys (partition keys are never written into the data files, so a name is
//! one or the other); every type parsed with [`HiveType::parse`]; one file holds one table; a file in
//! a database's folder defines a table of that database; a table defined by two files is an error,
//! never a guess; [`TableRegistry::add`] writes atomically (temp file, fsync, rename, fsync of the
//! folder).

use crate::schema::{Column, HiveType};
use arrow_schema::Schema;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The database of a definition that names none.
pub const DEFAULT_DATABASE: &str = "default";
/// [`TableDefinition::source`] of a table defined inline (`ddl = "..."`) in spillway.toml.
pub const INLINE_SOURCE: &str = "spillway.toml";
/// File extensions of Hive DDL definitions.
pub const DDL_EXTENSIONS: [&str; 3] = ["sql", "hql", "ddl"];
/// File extension of JSON definitions.
pub const JSON_EXTENSION: &str = "json";

/// A table: what a Glue table holds that spillway uses (the columns) and what it echoes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableDefinition {
    /// Lower-case database name.
    pub database: String,
    /// Lower-case table name.
    pub name: String,
    /// Data columns, in order; names lower-case.
    pub columns: Vec<Column>,
    /// Partition keys (Hive-style partitions); never written into the data files.
    pub partition_keys: Vec<Column>,
    pub location: Option<String>,
    pub serde_library: Option<String>,
    pub input_format: Option<String>,
    pub output_format: Option<String>,
    /// `TBLPROPERTIES` / Glue `Parameters`.
    pub properties: BTreeMap<String, String>,
    /// Where it was defined: a file path, or [`INLINE_SOURCE`].
    pub source: String,
}

impl TableDefinition {
    /// `database.table`.
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.database, self.name)
    }

    /// The Arrow schema of the data files: the data columns only (partition values live in the
    /// object key, never in the file).
    pub fn arrow_schema(&self) -> Schema {
        crate::schema::arrow_schema(&self.columns)
    }
}

/// Why a table definition could not be read, found or stored.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// A DDL statement that does not parse, or does not make a valid table.
    #[error("line {line}: {message}")]
    Syntax { line: usize, message: String },
    /// A JSON definition that does not parse, or does not make a valid table.
    #[error("{message}")]
    Json { message: String },
    /// An error in a definition file.
    #[error("{}: {error}", .path.display())]
    InFile { path: PathBuf, error: Box<TableError> },
    /// An error in a `[[tables]]` entry of spillway.toml (`index` counts from 1).
    #[error("[[tables]] entry {index} of the configuration: {error}")]
    InConfig { index: usize, error: Box<TableError> },
    /// No table of that name: the message is an API error's message as is.
    #[error("{}", not_found_message(.database, .table, .dir.as_deref()))]
    NotFound { database: String, table: String, dir: Option<PathBuf> },
    #[error("table {name} is defined twice, in {first} and in {second}; remove one of them")]
    Duplicate { name: String, first: String, second: String },
    #[error("table {name} already exists in {}; use 'spillway tables add --replace' to replace it", .path.display())]
    AlreadyExists { name: String, path: PathBuf },
    #[error(
        "table {name} is defined in spillway.toml ([[tables]]), which wins over the tables folder; change it there"
    )]
    Configured { name: String },
    #[error("cannot {action} {}: {error}", .path.display())]
    Io { action: &'static str, path: PathBuf, error: std::io::Error },
    /// Anything else a user has to fix (an unsupported file, a name that cannot be a file name...).
    #[error("{0}")]
    Invalid(String),
}

impl TableError {
    /// Whether the table does not exist (as opposed to existing in a broken or ambiguous form).
    pub fn is_not_found(&self) -> bool {
        matches!(self, TableError::NotFound { .. })
    }
}

fn not_found_message(database: &str, table: &str, dir: Option<&Path>) -> String {
    match dir {
        Some(dir) => format!(
            "Table {database}.{table} was not found. Define it in {}/ (a Hive DDL .sql file or a JSON column list), \
             in spillway.toml under [[tables]], or with 'spillway tables add'.",
            dir.join(database).display()
        ),
        None => format!("Table {database}.{table} was not found. Define it in spillway.toml under [[tables]]."),
    }
}

// ---------------------------------------------------------------------------------------------
// Hive DDL
// ---------------------------------------------------------------------------------------------

/// Parses one Hive / Athena `CREATE [EXTERNAL] TABLE` statement (a trailing `;` is allowed).
/// `default_database` is the database of an unqualified table name.
///
/// Accepted: `IF NOT EXISTS`; `db.t` and `` `db`.`t` ``; column and table `COMMENT`s;
/// `PARTITIONED BY (...)`; `CLUSTERED BY (...) [SORTED BY (...)] INTO n BUCKETS` (ignored);
/// `ROW FORMAT SERDE '...' [WITH SERDEPROPERTIES (...)]`; `ROW FORMAT DELIMITED ...` (the
/// delimiters are ignored); `STORED AS <format>` or `STORED AS INPUTFORMAT '...' OUTPUTFORMAT '...'`;
/// `LOCATION`; `TBLPROPERTIES`. The clauses may come in any order, each at most once. Keywords are
/// case-insensitive; `--` and `/* */` are comments; strings are '...' or "..." with backslash
/// escapes (and a doubled quote for the quote).
pub fn parse_ddl(text: &str, default_database: &str) -> Result<TableDefinition, TableError> {
    parse_ddl_named(text, default_database).1
}

/// [`parse_ddl`], also giving the (database, table) the statement names when it got that far,
/// so that a broken file can still be matched to the table it means to define.
fn parse_ddl_named(
    text: &str,
    default_database: &str,
) -> (Option<(String, String)>, Result<TableDefinition, TableError>) {
    let toks = match tokenize(text) {
        Ok(t) => t,
        Err(e) => return (None, Err(e)),
    };
    let last_line = toks.last().map_or(1, |t| t.line);
    let mut p = DdlParser { text, toks, pos: 0, last_line, ident: None };
    let result = p.statement(default_database);
    (p.ident, result)
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    /// A bare word: keyword, identifier or number.
    Word(String),
    /// A `backticked` identifier.
    Quoted(String),
    /// A '...' or "..." string, unescaped.
    Str(String),
    Punct(char),
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    line: usize,
    /// Byte range in the statement text.
    start: usize,
    end: usize,
}

fn syntax(line: usize, message: impl Into<String>) -> TableError {
    TableError::Syntax { line, message: message.into() }
}

fn tokenize(text: &str) -> Result<Vec<Token>, TableError> {
    let cs: Vec<(usize, char)> = text.char_indices().collect();
    let at = |k: usize| cs.get(k).map(|c| c.1);
    let offset = |k: usize| cs.get(k).map_or(text.len(), |c| c.0);
    let mut out = Vec::new();
    let mut line = 1;
    let mut k = 0;
    while let Some(c) = at(k) {
        let (start, start_line) = (offset(k), line);
        match c {
            '\n' => {
                line += 1;
                k += 1;
            }
            c if c.is_whitespace() => k += 1,
            '-' if at(k + 1) == Some('-') => {
                while at(k).is_some_and(|c| c != '\n') {
                    k += 1;
                }
            }
            '/' if at(k + 1) == Some('*') => {
                k += 2;
                loop {
                    match at(k) {
                        None => return Err(syntax(start_line, "unterminated /* comment")),
                        Some('*') if at(k + 1) == Some('/') => {
                            k += 2;
                            break;
                        }
                        Some(c) => {
                            if c == '\n' {
                                line += 1;
                            }
                            k += 1;
                        }
                    }
                }
            }
            '`' => {
                let mut name = String::new();
                k += 1;
                loop {
                    match at(k) {
                        None => return Err(syntax(start_line, "unterminated `identifier`")),
                        Some('`') if at(k + 1) == Some('`') => {
                            name.push('`');
                            k += 2;
                        }
                        Some('`') => {
                            k += 1;
                            break;
                        }
                        Some(c) => {
                            if c == '\n' {
                                line += 1;
                            }
                            name.push(c);
                            k += 1;
                        }
                    }
                }
                out.push(Token { tok: Tok::Quoted(name), line: start_line, start, end: offset(k) });
            }
            '\'' | '"' => {
                let quote = c;
                let mut s = String::new();
                k += 1;
                loop {
                    match at(k) {
                        None => return Err(syntax(start_line, format!("unterminated string (missing {quote})"))),
                        Some(q) if q == quote && at(k + 1) == Some(quote) => {
                            s.push(quote);
                            k += 2;
                        }
                        Some(q) if q == quote => {
                            k += 1;
                            break;
                        }
                        Some('\\') => {
                            k += 1;
                            let Some(e) = at(k) else { continue };
                            k += 1;
                            match e {
                                'n' => s.push('\n'),
                                't' => s.push('\t'),
                                'r' => s.push('\r'),
                                'b' => s.push('\u{8}'),
                                'Z' => s.push('\u{1a}'),
                                '0'..='7' => {
                                    // Octal, up to three digits: '\001' is Hive's default field delimiter.
                                    let mut v = e.to_digit(8).unwrap_or(0);
                                    for _ in 0..2 {
                                        match at(k).and_then(|d| d.to_digit(8)) {
                                            Some(d) => {
                                                v = v * 8 + d;
                                                k += 1;
                                            }
                                            None => break,
                                        }
                                    }
                                    s.push(char::from_u32(v).unwrap_or('\u{fffd}'));
                                }
                                'u' => {
                                    let hex: String = (0..4).filter_map(|i| at(k + i)).collect();
                                    match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                                        Some(ch) if hex.len() == 4 => {
                                            s.push(ch);
                                            k += 4;
                                        }
                                        _ => s.push('u'),
                                    }
                                }
                                '\n' => {
                                    line += 1;
                                    s.push('\n');
                                }
                                other => s.push(other),
                            }
                        }
                        Some(c) => {
                            if c == '\n' {
                                line += 1;
                            }
                            s.push(c);
                            k += 1;
                        }
                    }
                }
                out.push(Token { tok: Tok::Str(s), line: start_line, start, end: offset(k) });
            }
            c if c.is_alphanumeric() || c == '_' => {
                while at(k).is_some_and(|c| c.is_alphanumeric() || c == '_') {
                    k += 1;
                }
                let end = offset(k);
                out.push(Token { tok: Tok::Word(text[start..end].to_string()), line, start, end });
            }
            c => {
                k += 1;
                out.push(Token { tok: Tok::Punct(c), line, start, end: offset(k) });
            }
        }
    }
    Ok(out)
}

/// A column as written: its name and the text of its type, with the line for errors.
struct ColumnText {
    name: String,
    type_text: String,
    line: usize,
}

struct DdlParser<'a> {
    text: &'a str,
    toks: Vec<Token>,
    pos: usize,
    /// Line of the last token, for errors at the end of the statement.
    last_line: usize,
    /// The (database, table) named, once parsed.
    ident: Option<(String, String)>,
}

/// Input format, output format and SerDe of `STORED AS <format>`.
fn storage_format(name: &str) -> Option<(&'static str, &'static str, &'static str)> {
    const TEXT_IN: &str = "org.apache.hadoop.mapred.TextInputFormat";
    const TEXT_OUT: &str = "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat";
    Some(match name.to_ascii_uppercase().as_str() {
        "PARQUET" => (
            "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
            "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
            "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
        ),
        "ORC" => (
            "org.apache.hadoop.hive.ql.io.orc.OrcInputFormat",
            "org.apache.hadoop.hive.ql.io.orc.OrcOutputFormat",
            "org.apache.hadoop.hive.ql.io.orc.OrcSerde",
        ),
        "TEXTFILE" => (TEXT_IN, TEXT_OUT, "org.apache.hadoop.hive.serde2.lazy.LazySimpleSerDe"),
        "JSONFILE" => (TEXT_IN, TEXT_OUT, "org.apache.hadoop.hive.serde2.JsonSerDe"),
        "SEQUENCEFILE" => (
            "org.apache.hadoop.mapred.SequenceFileInputFormat",
            "org.apache.hadoop.hive.ql.io.HiveSequenceFileOutputFormat",
            "org.apache.hadoop.hive.serde2.lazy.LazySimpleSerDe",
        ),
        "RCFILE" => (
            "org.apache.hadoop.hive.ql.io.RCFileInputFormat",
            "org.apache.hadoop.hive.ql.io.RCFileOutputFormat",
            "org.apache.hadoop.hive.serde2.columnar.LazyBinaryColumnarSerDe",
        ),
        "AVRO" => (
            "org.apache.hadoop.hive.ql.io.avro.AvroContainerInputFormat",
            "org.apache.hadoop.hive.ql.io.avro.AvroContainerOutputFormat",
            "org.apache.hadoop.hive.serde2.avro.AvroSerDe",
        ),
        "ION" => (
            "com.amazon.ionhiveserde.formats.IonInputFormat",
            "com.amazon.ionhiveserde.formats.IonOutputFormat",
            "com.amazon.ionhiveserde.IonHiveSerDe",
        ),
        _ => return None,
    })
}

const LAZY_SIMPLE_SERDE: &str = "org.apache.hadoop.hive.serde2.lazy.LazySimpleSerDe";

impl DdlParser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.toks.get(self.pos)
    }

    fn line(&self) -> usize {
        self.peek().map_or(self.last_line, |t| t.line)
    }

    fn err(&self, message: impl Into<String>) -> TableError {
        syntax(self.line(), message)
    }

    /// The next token as written, for error messages.
    fn found(&self) -> String {
        match self.peek() {
            None => "the end of the statement".to_string(),
            Some(t) => format!("'{}'", &self.text[t.start..t.end]),
        }
    }

    fn is_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Token { tok: Tok::Word(w), .. }) if w.eq_ignore_ascii_case(kw))
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        let yes = self.is_kw(kw);
        if yes {
            self.pos += 1;
        }
        yes
    }

    fn expect_kw(&mut self, kw: &str) -> Result<(), TableError> {
        if self.eat_kw(kw) { Ok(()) } else { Err(self.err(format!("expected {kw}, found {}", self.found()))) }
    }

    fn is_punct(&self, c: char) -> bool {
        matches!(self.peek(), Some(Token { tok: Tok::Punct(p), .. }) if *p == c)
    }

    fn eat_punct(&mut self, c: char) -> bool {
        let yes = self.is_punct(c);
        if yes {
            self.pos += 1;
        }
        yes
    }

    fn expect_punct(&mut self, c: char, context: &str) -> Result<(), TableError> {
        if self.eat_punct(c) {
            Ok(())
        } else {
            Err(self.err(format!("expected '{c}' {context}, found {}", self.found())))
        }
    }

    /// An identifier: a bare word or a `backticked` name.
    fn ident(&mut self, what: &str) -> Result<String, TableError> {
        match self.peek().map(|t| &t.tok) {
            Some(Tok::Word(w) | Tok::Quoted(w)) => {
                let w = w.clone();
                self.pos += 1;
                Ok(w)
            }
            _ => Err(self.err(format!("expected {what}, found {}", self.found()))),
        }
    }

    fn string(&mut self, what: &str) -> Result<String, TableError> {
        match self.peek().map(|t| &t.tok) {
            Some(Tok::Str(s)) => {
                let s = s.clone();
                self.pos += 1;
                Ok(s)
            }
            _ => Err(self.err(format!("expected {what} (a quoted string), found {}", self.found()))),
        }
    }

    fn statement(&mut self, default_database: &str) -> Result<TableDefinition, TableError> {
        if self.peek().is_none() {
            return Err(self.err("the definition is empty: expected a CREATE TABLE statement"));
        }
        if !self.eat_kw("CREATE") {
            return Err(self.err(format!(
                "not a CREATE TABLE statement: expected CREATE [EXTERNAL] TABLE, found {}",
                self.found()
            )));
        }
        self.eat_kw("EXTERNAL");
        if !self.eat_kw("TABLE") {
            return Err(self.err(format!(
                "not a CREATE TABLE statement: expected CREATE [EXTERNAL] TABLE, found {} after CREATE",
                self.found()
            )));
        }
        if self.eat_kw("IF") {
            self.expect_kw("NOT")?;
            self.expect_kw("EXISTS")?;
        }
        let name_line = self.line();
        let first = self.ident("the table name")?;
        let (database, name) = if self.eat_punct('.') {
            (first, self.ident("the table name after the database name")?)
        } else {
            (default_database.to_string(), first)
        };
        let (database, name) = (database.to_lowercase(), name.to_lowercase());
        if database.is_empty() || name.is_empty() {
            return Err(syntax(name_line, "the database and table names must not be empty"));
        }
        self.ident = Some((database.clone(), name.clone()));
        if self.is_kw("LIKE") {
            return Err(self.err("CREATE TABLE ... LIKE is not supported: list the columns"));
        }
        if self.is_kw("AS") {
            return Err(self.err("CREATE TABLE ... AS SELECT is not supported: list the columns"));
        }
        if !self.is_punct('(') {
            return Err(
                self.err(format!("expected '(' and the column list after the table name, found {}", self.found()))
            );
        }
        let columns_line = self.line();
        let columns = self.column_list("column")?;

        let mut partition_keys = Vec::new();
        let mut table = TableDefinition {
            database,
            name,
            columns: Vec::new(),
            partition_keys: Vec::new(),
            location: None,
            serde_library: None,
            input_format: None,
            output_format: None,
            properties: BTreeMap::new(),
            source: String::new(),
        };
        let mut stored_serde = None;
        let mut seen: Vec<&'static str> = Vec::new();
        let mut once = |clause: &'static str, line: usize| {
            if seen.contains(&clause) {
                return Err(syntax(line, format!("{clause} appears twice")));
            }
            seen.push(clause);
            Ok(())
        };
        loop {
            let line = self.line();
            if self.peek().is_none() {
                break;
            }
            if self.eat_punct(';') {
                if self.peek().is_some() {
                    return Err(self.err(format!("a definition holds one statement, found {} after ';'", self.found())));
                }
                break;
            }
            if self.eat_kw("COMMENT") {
                once("COMMENT", line)?;
                self.string("the table comment")?;
            } else if self.eat_kw("PARTITIONED") {
                self.expect_kw("BY")?;
                once("PARTITIONED BY", line)?;
                if !self.is_punct('(') {
                    return Err(self.err(format!("expected '(' and the partition keys, found {}", self.found())));
                }
                partition_keys = self.column_list("partition key")?;
                if partition_keys.is_empty() {
                    return Err(syntax(line, "PARTITIONED BY lists no partition keys"));
                }
            } else if self.eat_kw("CLUSTERED") {
                self.expect_kw("BY")?;
                once("CLUSTERED BY", line)?;
                self.skip_parenthesized()?;
                if self.eat_kw("SORTED") {
                    self.expect_kw("BY")?;
                    self.skip_parenthesized()?;
                }
                self.expect_kw("INTO")?;
                match self.peek().map(|t| &t.tok) {
                    Some(Tok::Word(n)) if n.bytes().all(|b| b.is_ascii_digit()) => self.pos += 1,
                    _ => return Err(self.err(format!("expected the number of buckets, found {}", self.found()))),
                }
                self.expect_kw("BUCKETS")?;
            } else if self.eat_kw("ROW") {
                self.expect_kw("FORMAT")?;
                once("ROW FORMAT", line)?;
                if self.eat_kw("SERDE") {
                    table.serde_library = Some(self.string("the SerDe class")?);
                    if self.eat_kw("WITH") {
                        self.expect_kw("SERDEPROPERTIES")?;
                        self.properties()?;
                    }
                } else if self.eat_kw("DELIMITED") {
                    self.delimiters()?;
                    table.serde_library = Some(LAZY_SIMPLE_SERDE.to_string());
                } else {
                    return Err(
                        self.err(format!("expected SERDE or DELIMITED after ROW FORMAT, found {}", self.found()))
                    );
                }
            } else if self.eat_kw("WITH") {
                self.expect_kw("SERDEPROPERTIES")?;
                once("WITH SERDEPROPERTIES", line)?;
                self.properties()?;
            } else if self.eat_kw("STORED") {
                if self.is_kw("BY") {
                    return Err(self.err("STORED BY (a storage handler) is not supported: use STORED AS"));
                }
                self.expect_kw("AS")?;
                once("STORED AS", line)?;
                if self.eat_kw("INPUTFORMAT") {
                    table.input_format = Some(self.string("the input format class")?);
                    self.expect_kw("OUTPUTFORMAT")?;
                    table.output_format = Some(self.string("the output format class")?);
                } else {
                    let format_line = self.line();
                    let format = self.ident("a storage format (PARQUET, ORC, TEXTFILE...)")?;
                    let Some((input, output, serde)) = storage_format(&format) else {
                        return Err(syntax(
                            format_line,
                            format!(
                                "unknown storage format '{format}' (expected PARQUET, ORC, TEXTFILE, JSONFILE, \
                                 SEQUENCEFILE, RCFILE, AVRO, ION, or INPUTFORMAT '...' OUTPUTFORMAT '...')"
                            ),
                        ));
                    };
                    table.input_format = Some(input.to_string());
                    table.output_format = Some(output.to_string());
                    stored_serde = Some(serde.to_string());
                }
            } else if self.eat_kw("LOCATION") {
                once("LOCATION", line)?;
                table.location = Some(self.string("the location")?);
            } else if self.eat_kw("TBLPROPERTIES") {
                once("TBLPROPERTIES", line)?;
                table.properties = self.properties()?;
            } else {
                return Err(self.err(format!(
                    "unexpected {} after the column list (expected COMMENT, PARTITIONED BY, CLUSTERED BY, \
                     ROW FORMAT, STORED AS, LOCATION, TBLPROPERTIES or the end of the statement)",
                    self.found()
                )));
            }
        }
        if table.serde_library.is_none() {
            table.serde_library = stored_serde;
        }
        if columns.is_empty() {
            return Err(syntax(columns_line, format!("table {} has no columns", table.qualified_name())));
        }
        check_names(
            columns.iter().map(|c| (c.name.as_str(), c.line)),
            partition_keys.iter().map(|c| (c.name.as_str(), c.line)),
        )
        .map_err(|(line, message)| syntax(line, message))?;
        let typed = |cols: Vec<ColumnText>, what: &str| -> Result<Vec<Column>, TableError> {
            cols.into_iter()
                .map(|c| {
                    HiveType::parse(&c.type_text)
                        .map(|t| Column::new(c.name.clone(), t))
                        .map_err(|e| syntax(c.line, format!("{what} '{}': {e}", c.name)))
                })
                .collect()
        };
        table.columns = typed(columns, "column")?;
        table.partition_keys = typed(partition_keys, "partition key")?;
        Ok(table)
    }

    /// `( name type [COMMENT '...'], ... )`; `what` names an entry in errors.
    fn column_list(&mut self, what: &str) -> Result<Vec<ColumnText>, TableError> {
        self.expect_punct('(', &format!("before the {what}s"))?;
        let mut out = Vec::new();
        if self.eat_punct(')') {
            return Ok(out);
        }
        loop {
            let line = self.line();
            let name = self.ident(&format!("a {what} name"))?.to_lowercase();
            let type_text = self.type_text();
            if type_text.is_empty() {
                return Err(syntax(line, format!("{what} '{name}' has no type")));
            }
            if type_text.starts_with('(') {
                return Err(syntax(
                    line,
                    format!(
                        "{what} '{name}(...)' is not a Hive column: partition transforms are Iceberg's, not Hive's"
                    ),
                ));
            }
            if self.eat_kw("COMMENT") {
                self.string(&format!("the comment of {what} '{name}'"))?;
            }
            out.push(ColumnText { name: name.clone(), type_text, line });
            if self.eat_punct(',') {
                continue;
            }
            if self.eat_punct(')') {
                return Ok(out);
            }
            return Err(self.err(format!("expected ',' or ')' after {what} '{name}', found {}", self.found())));
        }
    }

    /// The text of a column type: every token up to the next `,` or `)` outside brackets, or
    /// `COMMENT`; the tokens' text as written, a single space where there was space or a comment.
    fn type_text(&mut self) -> String {
        let mut open: Vec<char> = Vec::new();
        let mut out = String::new();
        let mut prev_end: Option<usize> = None;
        while let Some(t) = self.peek() {
            match &t.tok {
                Tok::Punct(',' | ';') if open.is_empty() => break,
                Tok::Punct(')') if open.last() != Some(&'(') => break,
                Tok::Word(w) if open.is_empty() && w.eq_ignore_ascii_case("COMMENT") => break,
                Tok::Punct(c @ ('<' | '(')) => open.push(*c),
                Tok::Punct(')') => {
                    open.pop();
                }
                Tok::Punct('>') if open.last() == Some(&'<') => {
                    open.pop();
                }
                _ => {}
            }
            if prev_end.is_some_and(|e| e != t.start) {
                out.push(' ');
            }
            out.push_str(&self.text[t.start..t.end]);
            prev_end = Some(t.end);
            self.pos += 1;
        }
        out
    }

    /// Skips `( ... )`, nested parentheses included.
    fn skip_parenthesized(&mut self) -> Result<(), TableError> {
        let line = self.line();
        self.expect_punct('(', "before the column list")?;
        let mut depth = 1;
        while depth > 0 {
            match self.peek().map(|t| &t.tok) {
                None => return Err(syntax(line, "unclosed '('")),
                Some(Tok::Punct('(')) => depth += 1,
                Some(Tok::Punct(')')) => depth -= 1,
                _ => {}
            }
            self.pos += 1;
        }
        Ok(())
    }

    /// `( 'key' = 'value', ... )`.
    fn properties(&mut self) -> Result<BTreeMap<String, String>, TableError> {
        self.expect_punct('(', "before the properties")?;
        let mut out = BTreeMap::new();
        if self.eat_punct(')') {
            return Ok(out);
        }
        loop {
            let key = self.string("a property name")?;
            self.expect_punct('=', &format!("after property '{key}'"))?;
            let value = self.string(&format!("the value of property '{key}'"))?;
            out.insert(key, value);
            if self.eat_punct(',') {
                continue;
            }
            self.expect_punct(')', "or ',' after a property")?;
            return Ok(out);
        }
    }

    /// The clauses of `ROW FORMAT DELIMITED` (their values are not used).
    fn delimiters(&mut self) -> Result<(), TableError> {
        loop {
            if self.eat_kw("FIELDS") {
                self.expect_kw("TERMINATED")?;
                self.expect_kw("BY")?;
                self.string("the field delimiter")?;
                if self.eat_kw("ESCAPED") {
                    self.expect_kw("BY")?;
                    self.string("the escape character")?;
                }
            } else if self.eat_kw("COLLECTION") {
                self.expect_kw("ITEMS")?;
                self.expect_kw("TERMINATED")?;
                self.expect_kw("BY")?;
                self.string("the collection item delimiter")?;
            } else if self.eat_kw("MAP") {
                self.expect_kw("KEYS")?;
                self.expect_kw("TERMINATED")?;
                self.expect_kw("BY")?;
                self.string("the map key delimiter")?;
            } else if self.eat_kw("LINES") {
                self.expect_kw("TERMINATED")?;
                self.expect_kw("BY")?;
                self.string("the line delimiter")?;
            } else if self.eat_kw("NULL") {
                self.expect_kw("DEFINED")?;
                self.expect_kw("AS")?;
                self.string("the null marker")?;
            } else {
                return Ok(());
            }
        }
    }
}

/// Checks that names are not empty and appear once among the columns and partition keys; the
/// error carries the location (`L`) of the offending entry.
fn check_names<'a, L>(
    columns: impl Iterator<Item = (&'a str, L)>,
    partition_keys: impl Iterator<Item = (&'a str, L)>,
) -> Result<(), (L, String)> {
    let mut data = HashSet::new();
    for (name, at) in columns {
        if name.is_empty() {
            return Err((at, "a column has an empty name".to_string()));
        }
        if !data.insert(name) {
            return Err((at, format!("column '{name}' appears twice")));
        }
    }
    let mut keys = HashSet::new();
    for (name, at) in partition_keys {
        if name.is_empty() {
            return Err((at, "a partition key has an empty name".to_string()));
        }
        if data.contains(name) {
            return Err((
                at,
                format!(
                    "partition key '{name}' repeats a data column (partition keys are not stored in the data files: \
                     a name is either a column or a partition key)"
                ),
            ));
        }
        if !keys.insert(name) {
            return Err((at, format!("partition key '{name}' appears twice")));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// JSON
// ---------------------------------------------------------------------------------------------

/// Parses a JSON table definition, one of:
/// - an `aws glue get-table` response: `{"Table": {"Name", "DatabaseName", "StorageDescriptor":
///   {"Columns": [{"Name", "Type", "Comment"}], "Location", "InputFormat", "OutputFormat",
///   "SerdeInfo": {"SerializationLibrary"}}, "PartitionKeys": [...], "Parameters": {...}}}`;
/// - a Glue `TableInput` (the same object without the `Table` wrapper);
/// - a plain object `{"database", "name", "columns": [{"name", "type", "comment"}], "partition_keys",
///   "location", "input_format", "output_format", "serde_library", "properties"}` (only `columns`
///   required; unknown keys are errors, so a typo is not silently ignored);
/// - a bare array of columns `[{"name", "type"}]`.
///
/// Keys are matched case-insensitively and without underscores (`Name`, `name`; `PartitionKeys`,
/// `partition_keys`). Glue objects may carry any other key (a get-table response has many).
/// `default_database` and `default_name` apply when the JSON names no database / table.
pub fn parse_json(text: &str, default_database: &str, default_name: &str) -> Result<TableDefinition, TableError> {
    parse_json_named(text, default_database, default_name).1
}

fn json_err(message: impl Into<String>) -> TableError {
    TableError::Json { message: message.into() }
}

fn norm_key(k: &str) -> String {
    k.chars().filter(|c| *c != '_').flat_map(char::to_lowercase).collect()
}

/// The value of `key` (a normalized key) in `obj`.
fn field<'v>(obj: &'v Map<String, Value>, key: &str) -> Option<&'v Value> {
    obj.iter().find(|(k, _)| norm_key(k) == key).map(|(_, v)| v).filter(|v| !v.is_null())
}

fn opt_string(obj: &Map<String, Value>, key: &str, path: &str) -> Result<Option<String>, TableError> {
    match field(obj, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(json_err(format!("{path} must be a string"))),
    }
}

fn parse_json_named(
    text: &str,
    default_database: &str,
    default_name: &str,
) -> (Option<(String, String)>, Result<TableDefinition, TableError>) {
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return (None, Err(json_err(format!("invalid JSON: {e}")))),
    };
    let mut table = TableDefinition {
        database: default_database.to_lowercase(),
        name: default_name.to_lowercase(),
        columns: Vec::new(),
        partition_keys: Vec::new(),
        location: None,
        serde_library: None,
        input_format: None,
        output_format: None,
        properties: BTreeMap::new(),
        source: String::new(),
    };
    let result = match &value {
        Value::Array(cols) => columns(cols, "", false).map(|c| table.columns = c),
        Value::Object(obj) => match field(obj, "table") {
            Some(Value::Object(inner)) => glue_table(inner, "Table.", &mut table),
            Some(_) => Err(json_err("Table must be an object")),
            None if field(obj, "storagedescriptor").is_some() => glue_table(obj, "", &mut table),
            None => plain_table(obj, &mut table),
        },
        _ => Err(json_err("expected a JSON object (a Glue table or {\"columns\": [...]}) or an array of columns")),
    };
    let ident = Some((table.database.clone(), table.name.clone()));
    let result = result.and_then(|()| {
        if table.database.is_empty() || table.name.is_empty() {
            return Err(json_err("the database and table names must not be empty"));
        }
        if table.columns.is_empty() {
            return Err(json_err(format!("table {} has no columns", table.qualified_name())));
        }
        check_names(
            table.columns.iter().map(|c| (c.name.as_str(), ())),
            table.partition_keys.iter().map(|c| (c.name.as_str(), ())),
        )
        .map_err(|((), message)| json_err(message))?;
        Ok(table)
    });
    (ident, result)
}

/// A Glue `Table` / `TableInput` object; `path` prefixes key names in errors.
fn glue_table(obj: &Map<String, Value>, path: &str, table: &mut TableDefinition) -> Result<(), TableError> {
    if let Some(name) = opt_string(obj, "name", &format!("{path}Name"))? {
        table.name = name.to_lowercase();
    }
    if let Some(db) = opt_string(obj, "databasename", &format!("{path}DatabaseName"))? {
        table.database = db.to_lowercase();
    }
    let sd_path = format!("{path}StorageDescriptor");
    let sd = match field(obj, "storagedescriptor") {
        Some(Value::Object(sd)) => sd,
        Some(_) => return Err(json_err(format!("{sd_path} must be an object"))),
        None => return Err(json_err(format!("{sd_path} is missing: it holds the columns"))),
    };
    table.columns = match field(sd, "columns") {
        Some(Value::Array(cols)) => columns(cols, &format!("{sd_path}.Columns"), true)?,
        Some(_) => return Err(json_err(format!("{sd_path}.Columns must be an array"))),
        None => return Err(json_err(format!("{sd_path}.Columns is missing"))),
    };
    table.location = opt_string(sd, "location", &format!("{sd_path}.Location"))?;
    table.input_format = opt_string(sd, "inputformat", &format!("{sd_path}.InputFormat"))?;
    table.output_format = opt_string(sd, "outputformat", &format!("{sd_path}.OutputFormat"))?;
    match field(sd, "serdeinfo") {
        None => {}
        Some(Value::Object(serde)) => {
            table.serde_library =
                opt_string(serde, "serializationlibrary", &format!("{sd_path}.SerdeInfo.SerializationLibrary"))?;
        }
        Some(_) => return Err(json_err(format!("{sd_path}.SerdeInfo must be an object"))),
    }
    table.partition_keys = match field(obj, "partitionkeys") {
        None => Vec::new(),
        Some(Value::Array(cols)) => columns(cols, &format!("{path}PartitionKeys"), true)?,
        Some(_) => return Err(json_err(format!("{path}PartitionKeys must be an array"))),
    };
    table.properties = properties(field(obj, "parameters"), &format!("{path}Parameters"))?;
    Ok(())
}

/// `{"database", "name", "columns", ...}`.
fn plain_table(obj: &Map<String, Value>, table: &mut TableDefinition) -> Result<(), TableError> {
    const KEYS: [&str; 9] = [
        "database",
        "name",
        "columns",
        "partition_keys",
        "location",
        "input_format",
        "output_format",
        "serde_library",
        "properties",
    ];
    if let Some(unknown) = obj.keys().find(|k| !KEYS.iter().any(|known| norm_key(known) == norm_key(k))) {
        return Err(json_err(format!(
            "unknown key '{unknown}' (expected {}; or a Glue table with StorageDescriptor)",
            KEYS.join(", ")
        )));
    }
    if let Some(db) = opt_string(obj, "database", "database")? {
        table.database = db.to_lowercase();
    }
    if let Some(name) = opt_string(obj, "name", "name")? {
        table.name = name.to_lowercase();
    }
    table.columns = match field(obj, "columns") {
        Some(Value::Array(cols)) => columns(cols, "columns", false)?,
        Some(_) => return Err(json_err("columns must be an array")),
        None => return Err(json_err("columns is missing: expected {\"columns\": [{\"name\": ..., \"type\": ...}]}")),
    };
    table.partition_keys = match field(obj, "partitionkeys") {
        None => Vec::new(),
        Some(Value::Array(cols)) => columns(cols, "partition_keys", false)?,
        Some(_) => return Err(json_err("partition_keys must be an array")),
    };
    table.location = opt_string(obj, "location", "location")?;
    table.input_format = opt_string(obj, "inputformat", "input_format")?;
    table.output_format = opt_string(obj, "outputformat", "output_format")?;
    table.serde_library = opt_string(obj, "serdelibrary", "serde_library")?;
    table.properties = properties(field(obj, "properties"), "properties")?;
    Ok(())
}

/// A list of `{"name", "type", "comment"}`; Glue columns (`glue`) may carry other keys.
fn columns(items: &[Value], path: &str, glue: bool) -> Result<Vec<Column>, TableError> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let at = format!("{path}[{i}]");
            let Value::Object(obj) = item else {
                return Err(json_err(format!("{at} must be an object {{\"name\": ..., \"type\": ...}}")));
            };
            if !glue
                && let Some(unknown) = obj.keys().find(|k| !["name", "type", "comment"].contains(&norm_key(k).as_str()))
            {
                return Err(json_err(format!("{at}: unknown key '{unknown}' (expected name, type, comment)")));
            }
            let name = opt_string(obj, "name", &format!("{at}.name"))?
                .ok_or_else(|| json_err(format!("{at}: the column has no name")))?
                .to_lowercase();
            let type_text = opt_string(obj, "type", &format!("{at}.type"))?
                .ok_or_else(|| json_err(format!("{at}: column '{name}' has no type")))?;
            opt_string(obj, "comment", &format!("{at}.comment"))?;
            let data_type = HiveType::parse(&type_text).map_err(|e| json_err(format!("{at}: column '{name}': {e}")))?;
            Ok(Column::new(name, data_type))
        })
        .collect()
}

/// A string-to-string object; numbers and booleans are kept as their JSON text.
fn properties(value: Option<&Value>, path: &str) -> Result<BTreeMap<String, String>, TableError> {
    match value {
        None => Ok(BTreeMap::new()),
        Some(Value::Object(obj)) => obj
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                Value::Number(_) | Value::Bool(_) => Ok((k.clone(), v.to_string())),
                _ => Err(json_err(format!("{path}.{k} must be a string"))),
            })
            .collect(),
        Some(_) => Err(json_err(format!("{path} must be an object of strings"))),
    }
}

// ---------------------------------------------------------------------------------------------
// Registry
// ---------------------------------------------------------------------------------------------

/// One `[[tables]]` entry of spillway.toml: a definition file (Hive DDL `.sql`/`.hql`/`.ddl`, or
/// `.json`) or inline DDL text. `database` is the default database of an unqualified DDL / JSON.
#[derive(Debug, Clone, serde::Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TableSource {
    pub database: Option<String>,
    pub file: Option<PathBuf>,
    pub ddl: Option<String>,
}

/// Finds tables by (database, table), case-insensitively: configured tables first, then the files
/// of the tables folder (see the module notes for the layout).
#[derive(Debug, Clone)]
pub struct TableRegistry {
    /// `<data-dir>/tables`; `None`: configured tables only.
    dir: Option<PathBuf>,
    configured: Vec<Arc<TableDefinition>>,
}

enum Kind {
    Ddl,
    Json,
}

fn kind_of(path: &Path) -> Option<Kind> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    if DDL_EXTENSIONS.contains(&ext.as_str()) {
        Some(Kind::Ddl)
    } else if ext == JSON_EXTENSION {
        Some(Kind::Json)
    } else {
        None
    }
}

fn unsupported_file(path: &Path) -> TableError {
    TableError::Invalid(format!(
        "{}: unsupported file: a table definition is a Hive DDL (.sql, .hql, .ddl) or a JSON (.json) file",
        path.display()
    ))
}

fn stem_of(path: &Path) -> String {
    path.file_stem().map(|s| s.to_string_lossy().to_lowercase()).unwrap_or_default()
}

/// A name that can be a file or folder name as is.
fn is_safe_file_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && !name.contains(['/', '\\', '\0'])
        && name.chars().all(|c| !c.is_control())
}

/// A definition file of the tables folder, read.
struct FileEntry {
    path: PathBuf,
    /// The database of the folder the file is in; `None` directly in the tables folder.
    folder_db: Option<String>,
    /// The (database, table) it defines or means to define, when it was read that far.
    ident: Option<(String, String)>,
    result: Result<Arc<TableDefinition>, TableError>,
}

impl FileEntry {
    fn defines(&self, database: &str, table: &str) -> bool {
        match &self.ident {
            Some((d, t)) => d == database && t == table,
            // Unreadable before its name: it is about the table its file is named after.
            None => stem_of(&self.path) == table && self.folder_db.as_deref().is_none_or(|f| f == database),
        }
    }
}

/// Reads a definition file; `default_db` applies to a definition that names no database.
fn read_definition(path: &Path, default_db: &str) -> (Option<(String, String)>, Result<TableDefinition, TableError>) {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_definition(path, &text, default_db),
        Err(error) => (None, Err(TableError::Io { action: "read", path: path.to_path_buf(), error })),
    }
}

/// Parses the `text` of the definition file `path` (DDL or JSON by its extension).
fn parse_definition(
    path: &Path,
    text: &str,
    default_db: &str,
) -> (Option<(String, String)>, Result<TableDefinition, TableError>) {
    let Some(kind) = kind_of(path) else { return (None, Err(unsupported_file(path))) };
    let (ident, result) = match kind {
        Kind::Ddl => parse_ddl_named(text, default_db),
        Kind::Json => parse_json_named(text, default_db, &stem_of(path)),
    };
    let result = result
        .map(|mut t| {
            t.source = path.display().to_string();
            t
        })
        .map_err(|e| TableError::InFile { path: path.to_path_buf(), error: Box::new(e) });
    (ident, result)
}

fn fsync_dir(dir: &Path) -> Result<(), TableError> {
    std::fs::File::open(dir).and_then(|f| f.sync_all()).map_err(|error| TableError::Io {
        action: "sync",
        path: dir.to_path_buf(),
        error,
    })
}

impl TableRegistry {
    /// No tables at all.
    pub fn empty() -> Self {
        Self { dir: None, configured: Vec::new() }
    }

    /// `dir` is `<data-dir>/tables` (created if missing); `sources` come from spillway.toml with
    /// relative paths already resolved. A broken configured source is an error here (start-up
    /// fails loudly), as is a table configured twice.
    pub fn new(dir: Option<PathBuf>, sources: &[TableSource]) -> Result<Self, TableError> {
        if let Some(dir) = &dir {
            std::fs::create_dir_all(dir).map_err(|error| TableError::Io {
                action: "create",
                path: dir.clone(),
                error,
            })?;
        }
        let mut configured: Vec<Arc<TableDefinition>> = Vec::new();
        for (i, source) in sources.iter().enumerate() {
            let in_config = |error| TableError::InConfig { index: i + 1, error: Box::new(error) };
            let table = Self::load_source(source).map_err(in_config)?;
            if let Some(other) = configured.iter().find(|t| t.database == table.database && t.name == table.name) {
                return Err(in_config(TableError::Duplicate {
                    name: table.qualified_name(),
                    first: other.source.clone(),
                    second: table.source.clone(),
                }));
            }
            configured.push(Arc::new(table));
        }
        Ok(Self { dir, configured })
    }

    fn load_source(source: &TableSource) -> Result<TableDefinition, TableError> {
        let database = source.database.as_deref().unwrap_or(DEFAULT_DATABASE);
        match (&source.file, &source.ddl) {
            (Some(_), Some(_)) => Err(TableError::Invalid("set either file or ddl, not both".to_string())),
            (None, None) => Err(TableError::Invalid(
                "set file (a Hive DDL or JSON definition file) or ddl (the CREATE TABLE statement)".to_string(),
            )),
            (Some(path), None) => read_definition(path, database).1,
            (None, Some(ddl)) => parse_ddl(ddl, database).map(|mut t| {
                t.source = INLINE_SOURCE.to_string();
                t
            }),
        }
    }

    /// The tables folder, if any.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    fn configured(&self, database: &str, table: &str) -> Option<&Arc<TableDefinition>> {
        self.configured.iter().find(|t| t.database == database && t.name == table)
    }

    /// Reads the definition files: those of the folder of `only_db` (every folder if `None`) and
    /// those directly in the tables folder. Sorted by path.
    fn scan(&self, only_db: Option<&str>) -> Result<Vec<FileEntry>, TableError> {
        let Some(dir) = &self.dir else { return Ok(Vec::new()) };
        let mut files: Vec<(PathBuf, Option<String>)> = Vec::new();
        let read_dir = |d: &Path| -> Result<Vec<(String, PathBuf)>, TableError> {
            let mut out = Vec::new();
            let entries = match std::fs::read_dir(d) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
                Err(error) => return Err(TableError::Io { action: "read", path: d.to_path_buf(), error }),
            };
            for entry in entries {
                let entry = entry.map_err(|error| TableError::Io { action: "read", path: d.to_path_buf(), error })?;
                let Ok(name) = entry.file_name().into_string() else { continue };
                if !name.starts_with('.') {
                    out.push((name, entry.path()));
                }
            }
            Ok(out)
        };
        for (name, path) in read_dir(dir)? {
            if path.is_dir() {
                let db = name.to_lowercase();
                if only_db.is_some_and(|o| o != db) {
                    continue;
                }
                for (_, file) in read_dir(&path)? {
                    if file.is_file() && kind_of(&file).is_some() {
                        files.push((file, Some(db.clone())));
                    }
                }
            } else if path.is_file() && kind_of(&path).is_some() {
                files.push((path, None));
            }
        }
        files.sort();
        Ok(files
            .into_iter()
            .map(|(path, folder_db)| {
                let (ident, result) = read_definition(&path, folder_db.as_deref().unwrap_or(DEFAULT_DATABASE));
                let result = match (result, &folder_db) {
                    (Ok(t), Some(f)) if &t.database != f => Err(TableError::InFile {
                        path: path.clone(),
                        error: Box::new(TableError::Invalid(format!(
                            "the definition names database '{}' but is in the folder of database '{f}': move it to \
                             the folder '{}' or remove the database from the definition",
                            t.database, t.database
                        ))),
                    }),
                    (result, _) => result.map(Arc::new),
                };
                // A file in a database's folder is about that database, whatever it names.
                let ident = match (ident, &folder_db) {
                    (Some((_, t)), Some(f)) => Some((f.clone(), t)),
                    (ident, _) => ident,
                };
                FileEntry { path, folder_db, ident, result }
            })
            .collect())
    }

    /// Looks a table up. Files in the directory are read at every lookup (lookups happen only at
    /// CreateDeliveryStream/UpdateDestination/supervisor start), so tables added with
    /// `spillway tables add` while the server runs are found without a restart. Layout:
    /// `<dir>/<database>/<anything>.sql|.hql|.ddl|.json` belong to <database> (a DDL may not name
    /// another database there); files directly in `<dir>` belong to the database their DDL names,
    /// else "default". Configured tables win over files. A broken file that defines the wanted
    /// table gives its parse error; broken unrelated files are ignored here.
    ///
    /// Blocking file I/O: call it off the async workers.
    pub fn lookup(&self, database: &str, table: &str) -> Result<Arc<TableDefinition>, TableError> {
        let (database, table) = (database.to_lowercase(), table.to_lowercase());
        if let Some(t) = self.configured(&database, &table) {
            return Ok(t.clone());
        }
        let mut found: Vec<(PathBuf, Arc<TableDefinition>)> = Vec::new();
        for entry in self.scan(Some(&database))? {
            if !entry.defines(&database, &table) {
                continue;
            }
            match entry.result {
                Ok(t) => found.push((entry.path, t)),
                Err(e) => return Err(e),
            }
        }
        match found.len() {
            0 => Err(TableError::NotFound { database, table, dir: self.dir.clone() }),
            1 => Ok(found.remove(0).1),
            _ => Err(TableError::Duplicate {
                name: format!("{database}.{table}"),
                first: found[0].0.display().to_string(),
                second: found[1].0.display().to_string(),
            }),
        }
    }

    /// Every table (for `spillway tables list`), sorted by database and name, with per-file errors
    /// reported separately. Files shadowed by a configured table are left out; a table defined by
    /// two files is an error, not listed.
    pub fn list(&self) -> (Vec<Arc<TableDefinition>>, Vec<TableError>) {
        let mut tables: Vec<Arc<TableDefinition>> = self.configured.clone();
        let mut errors = Vec::new();
        let entries = match self.scan(None) {
            Ok(e) => e,
            Err(e) => {
                errors.push(e);
                Vec::new()
            }
        };
        let mut from_files: BTreeMap<(String, String), Vec<Arc<TableDefinition>>> = BTreeMap::new();
        for entry in entries {
            match entry.result {
                Err(e) => errors.push(e),
                Ok(t) if self.configured(&t.database, &t.name).is_some() => {}
                Ok(t) => from_files.entry((t.database.clone(), t.name.clone())).or_default().push(t),
            }
        }
        for (_, defs) in from_files {
            match defs.as_slice() {
                [one] => tables.push(one.clone()),
                [first, second, ..] => errors.push(TableError::Duplicate {
                    name: first.qualified_name(),
                    first: first.source.clone(),
                    second: second.source.clone(),
                }),
                [] => {}
            }
        }
        tables.sort_by(|a, b| (&a.database, &a.name).cmp(&(&b.database, &b.name)));
        (tables, errors)
    }

    /// Validates a definition file and copies it to `<dir>/<database>/<table>.<ext>` atomically
    /// (temp file, fsync, rename); returns the definition. `database` is the default database of
    /// an unqualified definition (else "default"); a definition naming another one is refused.
    /// Refuses to overwrite an existing table unless `replace`, which also deletes the other files
    /// that defined it. A table configured in spillway.toml cannot be added (it would win).
    pub fn add(&self, path: &Path, database: Option<&str>, replace: bool) -> Result<Arc<TableDefinition>, TableError> {
        let Some(dir) = &self.dir else {
            return Err(TableError::Invalid("no tables folder: tables can only be configured".to_string()));
        };
        let Some(ext) = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase) else {
            return Err(unsupported_file(path));
        };
        let wanted_db = database.map(str::to_lowercase);
        // Read once: the bytes copied are the bytes checked.
        let text = std::fs::read_to_string(path).map_err(|error| TableError::Io {
            action: "read",
            path: path.to_path_buf(),
            error,
        })?;
        let (_, result) = parse_definition(path, &text, wanted_db.as_deref().unwrap_or(DEFAULT_DATABASE));
        let mut table = result?;
        if let Some(db) = &wanted_db
            && &table.database != db
        {
            return Err(TableError::InFile {
                path: path.to_path_buf(),
                error: Box::new(TableError::Invalid(format!(
                    "the definition names database '{}', not '{db}'",
                    table.database
                ))),
            });
        }
        for (what, name) in [("database", &table.database), ("table", &table.name)] {
            if !is_safe_file_name(name) {
                return Err(TableError::Invalid(format!(
                    "{what} name '{name}' cannot be stored as a file name: define this table in spillway.toml instead"
                )));
            }
        }
        if self.configured(&table.database, &table.name).is_some() {
            return Err(TableError::Configured { name: table.qualified_name() });
        }
        let existing: Vec<PathBuf> = self
            .scan(Some(&table.database))?
            .into_iter()
            .filter(|e| e.defines(&table.database, &table.name))
            .map(|e| e.path)
            .collect();
        if let Some(first) = existing.first()
            && !replace
        {
            return Err(TableError::AlreadyExists { name: table.qualified_name(), path: first.clone() });
        }
        let folder = dir.join(&table.database);
        std::fs::create_dir_all(&folder).map_err(|error| TableError::Io {
            action: "create",
            path: folder.clone(),
            error,
        })?;
        let target = folder.join(format!("{}.{ext}", table.name));
        let temp = folder.join(format!(".{}.{ext}.tmp-{}", table.name, std::process::id()));
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut f = std::fs::File::create(&temp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()
        };
        if let Err(error) = write() {
            let _ = std::fs::remove_file(&temp);
            return Err(TableError::Io { action: "write", path: temp, error });
        }
        if let Err(error) = std::fs::rename(&temp, &target) {
            let _ = std::fs::remove_file(&temp);
            return Err(TableError::Io { action: "write", path: target, error });
        }
        for old in existing.iter().filter(|p| **p != target) {
            std::fs::remove_file(old).map_err(|error| TableError::Io { action: "remove", path: old.clone(), error })?;
            if let Some(parent) = old.parent() {
                fsync_dir(parent)?;
            }
        }
        fsync_dir(&folder)?;
        fsync_dir(dir)?;
        table.source = target.display().to_string();
        Ok(Arc::new(table))
    }

    /// Deletes the file(s) that define a table in the tables folder (a broken file meant to define
    /// it included). A configured table cannot be removed here.
    pub fn remove(&self, database: &str, table: &str) -> Result<(), TableError> {
        let (database, table) = (database.to_lowercase(), table.to_lowercase());
        if self.configured(&database, &table).is_some() {
            return Err(TableError::Configured { name: format!("{database}.{table}") });
        }
        let files: Vec<PathBuf> =
            self.scan(Some(&database))?.into_iter().filter(|e| e.defines(&database, &table)).map(|e| e.path).collect();
        if files.is_empty() {
            return Err(TableError::NotFound { database, table, dir: self.dir.clone() });
        }
        for file in &files {
            std::fs::remove_file(file).map_err(|error| TableError::Io {
                action: "remove",
                path: file.clone(),
                error,
            })?;
            if let Some(parent) = file.parent() {
                fsync_dir(parent)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_schema::{DataType, TimeUnit};

    /// Seed 004's DDL, verbatim (shared with the benchmark and the black-box tests).
    const SEED_DDL: &str = include_str!("../tests/fixtures/nyctaxitrips.sql");

    fn names(cols: &[Column]) -> Vec<&str> {
        cols.iter().map(|c| c.name.as_str()).collect()
    }

    fn ddl_err(text: &str) -> (usize, String) {
        match parse_ddl(text, "default") {
            Err(TableError::Syntax { line, message }) => (line, message),
            other => panic!("expected a syntax error, got {other:?}"),
        }
    }

    #[test]
    fn parses_the_seed_ddl() {
        let t = parse_ddl(SEED_DDL, "kinesislab").unwrap();
        assert_eq!(t.database, "kinesislab");
        assert_eq!(t.name, "nyctaxitrips");
        assert_eq!(t.qualified_name(), "kinesislab.nyctaxitrips");
        assert_eq!(
            names(&t.columns),
            [
                "pickup_latitude",
                "pickup_longitude",
                "dropoff_latitude",
                "dropoff_longitude",
                "trip_id",
                "trip_distance",
                "passenger_count",
                "pickup_datetime",
                "dropoff_datetime",
                "total_amount"
            ]
        );
        assert_eq!(t.columns[0].data_type, HiveType::Double);
        assert_eq!(t.columns[4].data_type, HiveType::BigInt);
        assert_eq!(t.columns[6].data_type, HiveType::Int);
        assert_eq!(t.columns[7].data_type, HiveType::Timestamp);
        assert_eq!(names(&t.partition_keys), ["year", "month", "day", "hour"]);
        assert!(t.partition_keys.iter().all(|c| c.data_type == HiveType::String));
        assert_eq!(t.serde_library.as_deref(), Some("org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"));
        assert_eq!(t.input_format.as_deref(), Some("org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"));
        assert_eq!(t.output_format.as_deref(), Some("org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"));
        assert_eq!(t.location.as_deref(), Some("s3://kinesislab-nyctaxitrips-initials/nyctaxitrips/"));
        assert_eq!(t.properties, BTreeMap::from([("has_encrypted_data".to_string(), "false".to_string())]));

        let schema = t.arrow_schema();
        assert_eq!(schema.fields().len(), 10, "partition keys are not in the files");
        assert_eq!(schema.field(0).data_type(), &DataType::Float64);
        assert_eq!(schema.field(4).data_type(), &DataType::Int64);
        assert_eq!(schema.field(7).data_type(), &DataType::Timestamp(TimeUnit::Microsecond, None));
        assert!(schema.field_with_name("year").is_err());
    }

    #[test]
    fn parses_qualified_names_options_and_clauses() {
        let t = parse_ddl(
            "create external table if not exists Sales.Orders (Id BIGINT COMMENT 'the id', `Note` string)\n\
             COMMENT 'orders' STORED AS parquet LOCATION 's3://b/orders/'",
            "default",
        )
        .unwrap();
        assert_eq!((t.database.as_str(), t.name.as_str()), ("sales", "orders"));
        assert_eq!(names(&t.columns), ["id", "note"]);
        assert_eq!(t.serde_library.as_deref(), Some("org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"));
        assert_eq!(t.input_format.as_deref(), Some("org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"));

        let t = parse_ddl("CREATE TABLE `My DB`.`T` (a int)", "default").unwrap();
        assert_eq!((t.database.as_str(), t.name.as_str()), ("my db", "t"));
        let t = parse_ddl("CREATE TABLE t (a int);", "db1").unwrap();
        assert_eq!(t.qualified_name(), "db1.t");

        let t = parse_ddl(
            "CREATE TABLE t (a int, b string)
             CLUSTERED BY (a) SORTED BY (a ASC, b DESC) INTO 16 BUCKETS
             ROW FORMAT DELIMITED FIELDS TERMINATED BY '\\001' ESCAPED BY '\\\\'
               COLLECTION ITEMS TERMINATED BY ',' MAP KEYS TERMINATED BY ':' LINES TERMINATED BY '\\n'
               NULL DEFINED AS ''
             STORED AS TEXTFILE",
            "default",
        )
        .unwrap();
        assert_eq!(t.serde_library.as_deref(), Some(LAZY_SIMPLE_SERDE));
        assert_eq!(t.input_format.as_deref(), Some("org.apache.hadoop.mapred.TextInputFormat"));

        let t = parse_ddl(
            "CREATE EXTERNAL TABLE t (a int)
             ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'
             WITH SERDEPROPERTIES ('ignore.malformed.json' = 'true', \"paths\"=\"a\")
             STORED AS ORC
             TBLPROPERTIES ('parquet.compression'='SNAPPY', 'k2'='v2',)",
            "default",
        );
        // A trailing comma in the properties is not SQL.
        assert!(t.is_err());
        let t = parse_ddl(
            "CREATE EXTERNAL TABLE t (a int)
             ROW FORMAT SERDE 'org.openx.data.jsonserde.JsonSerDe'
             WITH SERDEPROPERTIES ('ignore.malformed.json' = 'true', \"paths\"=\"a\")
             STORED AS ORC
             TBLPROPERTIES ('parquet.compression'='SNAPPY', 'k2'='v2')",
            "default",
        )
        .unwrap();
        assert_eq!(t.serde_library.as_deref(), Some("org.openx.data.jsonserde.JsonSerDe"), "explicit SerDe wins");
        assert_eq!(t.output_format.as_deref(), Some("org.apache.hadoop.hive.ql.io.orc.OrcOutputFormat"));
        assert_eq!(t.properties.len(), 2);
    }

    #[test]
    fn nested_types_are_not_split_at_their_commas() {
        let t = parse_ddl(
            "CREATE TABLE t (
               price decimal(10, 2) COMMENT 'in cents, not dollars',
               tags array<string>,
               attrs map<string, array<struct<k: string, `v w`: decimal(5,1)>>>,
               point struct<x:double,y:double>,
               code varchar(3)
             ) PARTITIONED BY (dt date COMMENT 'day')",
            "default",
        )
        .unwrap();
        assert_eq!(names(&t.columns), ["price", "tags", "attrs", "point", "code"]);
        assert_eq!(t.columns[0].data_type, HiveType::Decimal { precision: 10, scale: 2 });
        assert_eq!(t.columns[1].data_type, HiveType::Array(Box::new(HiveType::String)));
        assert_eq!(t.columns[2].data_type.to_string(), "map<string,array<struct<k:string,v w:decimal(5,1)>>>");
        assert_eq!(t.columns[3].data_type.to_string(), "struct<x:double,y:double>");
        assert_eq!(t.columns[4].data_type, HiveType::Varchar(3));
        assert_eq!(t.partition_keys, vec![Column::new("dt", HiveType::Date)]);
    }

    #[test]
    fn comments_and_quoting() {
        let t = parse_ddl(
            "-- a leading comment; with a ' quote
             /* a block
                comment */ CREATE /* inline */ TABLE t ( -- trailing
               `select` int, -- a keyword as a name
               `we``ird` string /* before the comma */,
               comment string COMMENT 'it''s \\'quoted\\' \\u00e9 -- not a comment',
               `from` array< /* in a type */ int >
             )
             COMMENT \"a \\\"table\\\"\"
             -- the end",
            "default",
        )
        .unwrap();
        assert_eq!(names(&t.columns), ["select", "we`ird", "comment", "from"]);
        assert_eq!(t.columns[3].data_type, HiveType::Array(Box::new(HiveType::Int)));
        let toks = tokenize("'it''s \\'q\\' \\u00e9 \\001 \\t'").unwrap();
        assert_eq!(toks[0].tok, Tok::Str("it's 'q' é \u{1} \t".to_string()));
    }

    #[test]
    fn errors_are_clear_and_have_a_line() {
        let (line, msg) = ddl_err("CREATE TABLE t (\n  a int,\n  b int8\n)");
        assert_eq!(line, 3);
        assert!(msg.contains("column 'b'") && msg.contains("unknown type 'int8'"), "{msg}");

        let (line, msg) = ddl_err("CREATE TABLE t (\n  a int,\n  A string\n)");
        assert_eq!((line, msg.as_str()), (3, "column 'a' appears twice"));

        let (line, msg) = ddl_err("CREATE TABLE t (\n  year int\n)\nPARTITIONED BY (\n  year string)");
        assert_eq!(line, 5);
        assert!(msg.contains("partition key 'year' repeats a data column"), "{msg}");

        let (line, msg) = ddl_err("\n\nCREATE TABLE t ()");
        assert_eq!(line, 3);
        assert!(msg.contains("has no columns"), "{msg}");

        let (line, msg) = ddl_err("-- nothing\nSELECT * FROM t");
        assert_eq!(line, 2);
        assert!(msg.contains("not a CREATE TABLE statement"), "{msg}");
        assert!(ddl_err("CREATE VIEW v AS SELECT 1").1.contains("not a CREATE TABLE statement"));
        assert!(ddl_err("   ").1.contains("empty"));
        assert!(ddl_err("CREATE TABLE t (a int) LOCATION 'x'; DROP TABLE t").1.contains("one statement"));
        assert!(ddl_err("CREATE TABLE t (a int) LOCATION 'x' LOCATION 'y'").1.contains("LOCATION appears twice"));
        assert!(ddl_err("CREATE TABLE t (a int) STORED AS FOO").1.contains("unknown storage format 'FOO'"));
        assert!(ddl_err("CREATE TABLE t (a)").1.contains("column 'a' has no type"));
        assert!(ddl_err("CREATE TABLE t (a int) PARTITIONED BY (a2)").1.contains("partition key 'a2' has no type"));
        assert!(
            ddl_err("CREATE TABLE t (ts timestamp) PARTITIONED BY (day(ts))").1.contains("transforms are Iceberg's")
        );
        assert!(ddl_err("CREATE TABLE t (a int").1.contains("expected ',' or ')'"));
        assert!(ddl_err("CREATE TABLE t (a array<int, b int)").1.contains("invalid column type"));
        assert!(ddl_err("CREATE TABLE t LIKE u").1.contains("LIKE is not supported"));
        assert!(ddl_err("CREATE TABLE t (a int) FOO").1.contains("unexpected 'FOO'"));
        let (line, msg) = ddl_err("CREATE TABLE t (a int)\n LOCATION 's3://x");
        assert_eq!(line, 2);
        assert!(msg.contains("unterminated string"), "{msg}");
        assert!(ddl_err("CREATE TABLE t (a int) /* open").1.contains("unterminated /*"));
        let err = parse_ddl("CREATE TABLE t (a int, a int)", "default").unwrap_err();
        assert_eq!(err.to_string(), "line 1: column 'a' appears twice");
    }

    #[test]
    fn json_glue_get_table_response() {
        let text = r#"{"Table": {
            "Name": "NycTaxiTrips", "DatabaseName": "KinesisLab", "CreateTime": 1700000000.0, "Owner": "hadoop",
            "StorageDescriptor": {
                "Columns": [{"Name": "trip_id", "Type": "bigint", "Comment": "id"},
                            {"Name": "Fare", "Type": "decimal(10,2)"},
                            {"Name": "tags", "Type": "array<struct<k:string,v:int>>", "Parameters": {}}],
                "Location": "s3://b/t/", "InputFormat": "in", "OutputFormat": "out",
                "SerdeInfo": {"SerializationLibrary": "serde", "Parameters": {"serialization.format": "1"}},
                "Compressed": false},
            "PartitionKeys": [{"Name": "year", "Type": "string"}],
            "Parameters": {"classification": "parquet", "EXTERNAL": "TRUE"}}}"#;
        let t = parse_json(text, "default", "x").unwrap();
        assert_eq!(t.qualified_name(), "kinesislab.nyctaxitrips");
        assert_eq!(names(&t.columns), ["trip_id", "fare", "tags"]);
        assert_eq!(t.columns[1].data_type, HiveType::Decimal { precision: 10, scale: 2 });
        assert_eq!(names(&t.partition_keys), ["year"]);
        assert_eq!(t.location.as_deref(), Some("s3://b/t/"));
        assert_eq!(t.input_format.as_deref(), Some("in"));
        assert_eq!(t.output_format.as_deref(), Some("out"));
        assert_eq!(t.serde_library.as_deref(), Some("serde"));
        assert_eq!(t.properties["classification"], "parquet");
    }

    #[test]
    fn json_glue_table_input_plain_object_and_bare_array() {
        let input = r#"{"Name": "t", "StorageDescriptor": {"Columns": [{"Name": "a", "Type": "int"}]}}"#;
        let t = parse_json(input, "db", "file").unwrap();
        assert_eq!(t.qualified_name(), "db.t");
        assert_eq!(t.columns, vec![Column::new("a", HiveType::Int)]);

        let plain = r#"{"database": "Sales", "columns": [{"name": "A", "type": "INT", "comment": "c"}],
                        "partition_keys": [{"Name": "dt", "Type": "string"}], "location": "s3://b/"}"#;
        let t = parse_json(plain, "default", "Orders").unwrap();
        assert_eq!(t.qualified_name(), "sales.orders");
        assert_eq!(t.columns, vec![Column::new("a", HiveType::Int)]);
        assert_eq!(names(&t.partition_keys), ["dt"]);
        assert_eq!(t.location.as_deref(), Some("s3://b/"));

        let bare = r#"[{"Name": "a", "Type": "map<string,int>"}, {"name": "b", "type": "timestamp"}]"#;
        let t = parse_json(bare, "db", "events").unwrap();
        assert_eq!(t.qualified_name(), "db.events");
        assert_eq!(names(&t.columns), ["a", "b"]);
        assert!(t.partition_keys.is_empty());
    }

    #[test]
    fn json_errors() {
        let err = |text: &str| parse_json(text, "db", "t").unwrap_err().to_string();
        assert!(err("{").contains("invalid JSON"));
        assert!(err("[]").contains("has no columns"));
        assert!(err("42").contains("expected a JSON object"));
        assert!(err(r#"{"columns": [{"name": "a"}]}"#).contains("column 'a' has no type"));
        assert!(
            err(r#"{"columns": [{"name": "a", "type": "int8"}]}"#)
                .contains("columns[0]: column 'a': invalid column type")
        );
        assert!(
            err(r#"{"columns": [{"name": "a", "type": "int"}], "partition_key": []}"#)
                .contains("unknown key 'partition_key'")
        );
        assert!(err(r#"[{"name": "a", "type": "int", "typo": 1}]"#).contains("unknown key 'typo'"));
        assert!(
            err(r#"[{"name": "a", "type": "int"}, {"name": "A", "type": "int"}]"#).contains("column 'a' appears twice")
        );
        assert!(
            err(r#"{"columns": [{"name": "a", "type": "int"}], "partition_keys": [{"name": "a", "type": "int"}]}"#)
                .contains("repeats a data column")
        );
        assert!(err(r#"{"Table": {"Name": "t"}}"#).contains("Table.StorageDescriptor is missing"));
        assert!(
            err(r#"{"Table": {"Name": "t", "StorageDescriptor": {"Columns": [{"Name": "a", "Type": "bad"}]}}}"#)
                .contains("Table.StorageDescriptor.Columns[0]: column 'a'")
        );
    }

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    #[test]
    fn registry_finds_files_case_insensitively_and_rereads_them() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("tables");
        let reg = TableRegistry::new(Some(dir.clone()), &[]).unwrap();
        assert!(dir.is_dir(), "created");
        let err = reg.lookup("KinesisLab", "NycTaxiTrips").unwrap_err();
        assert!(err.is_not_found());
        assert_eq!(
            err.to_string(),
            format!(
                "Table kinesislab.nyctaxitrips was not found. Define it in {}/ (a Hive DDL .sql file or a JSON column \
                 list), in spillway.toml under [[tables]], or with 'spillway tables add'.",
                dir.join("kinesislab").display()
            )
        );

        // Found once written, without a new registry.
        write(&dir.join("KinesisLab/trips.sql"), SEED_DDL);
        let t = reg.lookup("KINESISLAB", "nyctaxitrips").unwrap();
        assert_eq!(t.qualified_name(), "kinesislab.nyctaxitrips");
        assert_eq!(t.source, dir.join("KinesisLab/trips.sql").display().to_string());
        assert!(reg.lookup("other", "nyctaxitrips").unwrap_err().is_not_found());

        // Top level: the database its definition names, else "default".
        write(&dir.join("orders.sql"), "CREATE TABLE sales.orders (id bigint)");
        write(&dir.join("events.json"), r#"[{"name": "a", "type": "int"}]"#);
        write(&dir.join("README.md"), "not a table");
        write(&dir.join(".hidden.sql"), "broken");
        assert_eq!(reg.lookup("Sales", "Orders").unwrap().columns.len(), 1);
        assert_eq!(reg.lookup("default", "events").unwrap().columns.len(), 1);

        // A JSON file in a database folder, named after the file.
        write(&dir.join("web/Clicks.json"), r#"{"columns": [{"name": "url", "type": "string"}]}"#);
        assert_eq!(reg.lookup("web", "clicks").unwrap().qualified_name(), "web.clicks");

        // Broken unrelated files are ignored by lookups, listed as errors.
        write(&dir.join("web/broken.sql"), "CREATE TABLE broken (a nope)");
        assert!(reg.lookup("web", "clicks").is_ok());
        let err = reg.lookup("web", "broken").unwrap_err();
        assert!(err.to_string().contains("unknown type 'nope'"), "{err}");
        let (tables, errors) = reg.list();
        let listed: Vec<String> = tables.iter().map(|t| t.qualified_name()).collect();
        assert_eq!(listed, ["default.events", "kinesislab.nyctaxitrips", "sales.orders", "web.clicks"]);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].to_string().contains("broken.sql: line 1:"), "{}", errors[0]);

        // A file may not name another database than its folder's.
        write(&dir.join("web/other.sql"), "CREATE TABLE sales.other (a int)");
        let err = reg.lookup("web", "other").unwrap_err().to_string();
        assert!(err.contains("names database 'sales' but is in the folder of database 'web'"), "{err}");

        // Two files defining one table: an error, not a guess.
        write(&dir.join("web/clicks2.sql"), "CREATE TABLE clicks (url string)");
        assert!(matches!(reg.lookup("web", "clicks"), Err(TableError::Duplicate { .. })));
    }

    #[test]
    fn configured_tables_win_and_broken_ones_fail_start_up() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("tables");
        write(&dir.join("db/t.sql"), "CREATE TABLE t (from_file int)");
        write(&tmp.path().join("conf/t.json"), r#"[{"name": "from_json", "type": "int"}]"#);
        let sources = [
            TableSource { database: Some("db".into()), file: None, ddl: Some("CREATE TABLE t (inline int)".into()) },
            TableSource { database: Some("Db".into()), file: Some(tmp.path().join("conf/t.json")), ddl: None },
        ];
        // `t` twice: the inline one and t.json, both db.t.
        let err = TableRegistry::new(Some(dir.clone()), &sources).unwrap_err().to_string();
        assert!(err.starts_with("[[tables]] entry 2 of the configuration: table db.t is defined twice"), "{err}");

        let reg = TableRegistry::new(Some(dir.clone()), &sources[..1]).unwrap();
        let t = reg.lookup("DB", "T").unwrap();
        assert_eq!(names(&t.columns), ["inline"]);
        assert_eq!(t.source, INLINE_SOURCE);
        let (tables, errors) = reg.list();
        assert_eq!(tables.len(), 1, "the shadowed file is not listed");
        assert!(errors.is_empty());
        assert!(matches!(reg.remove("db", "t"), Err(TableError::Configured { .. })));

        let reg = TableRegistry::new(None, &sources[1..]).unwrap();
        assert_eq!(reg.lookup("db", "t").unwrap().source, tmp.path().join("conf/t.json").display().to_string());
        assert_eq!(
            reg.lookup("db", "u").unwrap_err().to_string(),
            "Table db.u was not found. Define it in spillway.toml under [[tables]]."
        );

        let broken = TableSource { database: None, file: None, ddl: Some("CREATE TABLE t (a int".into()) };
        let err = TableRegistry::new(None, &[broken]).unwrap_err().to_string();
        assert!(err.starts_with("[[tables]] entry 1 of the configuration: line 1:"), "{err}");
        let both = TableSource { database: None, file: Some("a.sql".into()), ddl: Some("x".into()) };
        assert!(TableRegistry::new(None, &[both]).is_err());
        let missing = TableSource { database: None, file: Some(tmp.path().join("absent.sql")), ddl: None };
        assert!(TableRegistry::new(None, &[missing]).unwrap_err().to_string().contains("cannot read"));
        let neither = TableSource { database: None, file: None, ddl: None };
        assert!(TableRegistry::new(None, &[neither]).is_err());

        let source: TableSource = serde_json::from_str(r#"{"database": "d", "file": "t.sql"}"#).unwrap();
        assert_eq!(source.file.as_deref(), Some(Path::new("t.sql")));
        assert!(serde_json::from_str::<TableSource>(r#"{"path": "t.sql"}"#).is_err());
        assert!(TableRegistry::empty().lookup("a", "b").unwrap_err().is_not_found());
    }

    #[test]
    fn add_copies_atomically_and_remove_deletes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("tables");
        let reg = TableRegistry::new(Some(dir.clone()), &[]).unwrap();
        let seed = tmp.path().join("in/seed.SQL");
        write(&seed, SEED_DDL);

        let t = reg.add(&seed, Some("KinesisLab"), false).unwrap();
        let target = dir.join("kinesislab/nyctaxitrips.sql");
        assert_eq!(t.source, target.display().to_string());
        assert_eq!(std::fs::read_to_string(&target).unwrap(), SEED_DDL);
        assert_eq!(reg.lookup("kinesislab", "nyctaxitrips").unwrap().columns.len(), 10);
        let leftovers: Vec<_> = std::fs::read_dir(dir.join("kinesislab")).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp file left");

        let err = reg.add(&seed, Some("kinesislab"), false).unwrap_err();
        assert!(matches!(err, TableError::AlreadyExists { .. }), "{err}");
        assert!(err.to_string().contains("--replace"));

        // Replacing with a JSON definition removes the DDL.
        let json = tmp.path().join("in/nyctaxitrips.json");
        write(&json, r#"[{"name": "only", "type": "int"}]"#);
        let t = reg.add(&json, Some("kinesislab"), true).unwrap();
        assert_eq!(names(&t.columns), ["only"]);
        assert!(!target.exists());
        assert!(dir.join("kinesislab/nyctaxitrips.json").is_file());
        assert_eq!(names(&reg.lookup("kinesislab", "nyctaxitrips").unwrap().columns), ["only"]);

        // An unqualified DDL without --database goes to "default"; a conflicting one is refused.
        let plain = tmp.path().join("in/plain.ddl");
        write(&plain, "CREATE TABLE Plain (a int)");
        assert_eq!(reg.add(&plain, None, false).unwrap().qualified_name(), "default.plain");
        assert!(dir.join("default/plain.ddl").is_file());
        let qualified = tmp.path().join("in/q.sql");
        write(&qualified, "CREATE TABLE sales.q (a int)");
        assert!(reg.add(&qualified, Some("web"), false).unwrap_err().to_string().contains("names database 'sales'"));

        // Broken or unsupported files are not added.
        let broken = tmp.path().join("in/broken.sql");
        write(&broken, "CREATE TABLE b (a nope)");
        assert!(reg.add(&broken, None, false).unwrap_err().to_string().contains("unknown type 'nope'"));
        assert!(!dir.join("default/b.sql").exists());
        let txt = tmp.path().join("in/t.txt");
        write(&txt, "x");
        assert!(reg.add(&txt, None, false).unwrap_err().to_string().contains("unsupported file"));
        let unsafe_name = tmp.path().join("in/dots.sql");
        write(&unsafe_name, "CREATE TABLE `..` (a int)");
        assert!(reg.add(&unsafe_name, None, false).unwrap_err().to_string().contains("cannot be stored"));

        reg.remove("KinesisLab", "NycTaxiTrips").unwrap();
        assert!(reg.lookup("kinesislab", "nyctaxitrips").unwrap_err().is_not_found());
        assert!(reg.remove("kinesislab", "nyctaxitrips").unwrap_err().is_not_found());
        // A broken file is removable too (it is about the table it is named after).
        write(&dir.join("default/b.sql"), "CREATE TABLE b (a nope)");
        reg.remove("default", "b").unwrap();
        assert!(!dir.join("default/b.sql").exists());
    }
}
