//! Dynamic `WHERE` clauses with bound parameters, for list queries with optional
//! filters (the common subset of SQLite and PostgreSQL).

/// A SQL `WHERE` fragment with its parameters (text or integer). Clauses are built only
/// from constant SQL and `$n` placeholders; every value is bound, so the dynamic SQL
/// these produce is safe (`AssertSqlSafe` below).
#[derive(Debug, Default, Clone)]
pub struct Filter {
    pub clauses: Vec<String>,
    pub params: Vec<Param>,
}

#[derive(Debug, Clone)]
pub enum Param {
    Text(String),
    Int(i64),
}

impl Filter {
    /// The next placeholder (`$n`) for a new parameter.
    pub fn bind(&mut self, param: Param) -> String {
        self.params.push(param);
        format!("${}", self.params.len())
    }

    pub fn push(&mut self, clause: String) {
        self.clauses.push(clause);
    }

    /// `col IN ($a, $b, …)` over text values; nothing when `values` is empty.
    pub fn any_text(&mut self, column: &str, values: &[String]) {
        if values.is_empty() {
            return;
        }
        let marks: Vec<String> = values
            .iter()
            .map(|v| self.bind(Param::Text(v.clone())))
            .collect();
        self.clauses
            .push(format!("{column} IN ({})", marks.join(", ")));
    }

    pub fn where_sql(&self) -> String {
        if self.clauses.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", self.clauses.join(" AND "))
        }
    }
}

pub fn bind_all<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments>,
    params: &'q [Param],
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments> {
    for param in params {
        query = match param {
            Param::Text(text) => query.bind(text.as_str()),
            Param::Int(n) => query.bind(*n),
        };
    }
    query
}
