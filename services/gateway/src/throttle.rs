//! Login throttling, shared by every gateway replica (the counters are rows of the
//! gateway database): per account, at most [`LoginThrottle::per_account`] failed logins
//! in a window, and per client address [`LoginThrottle::per_address`]; past either, logins
//! for that account or from that address are refused (RESOURCE_EXHAUSTED with the
//! seconds until the window ends) before any password is checked — even the right one.
//! A successful login clears the account's counter (not the address's).

use casescope_db::{Database, DbError, now_micros};
use sqlx::Row;
use std::time::Duration;

#[derive(Clone)]
pub struct LoginThrottle {
    db: Database,
    pub window: Duration,
    pub per_account: i64,
    pub per_address: i64,
}

fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX / 4)
}

pub fn account_key(username: &str) -> String {
    format!("user:{}", username.to_ascii_lowercase())
}

pub fn address_key(address: &str) -> String {
    format!("addr:{address}")
}

impl LoginThrottle {
    /// 5 failures per account and 20 per address in 15 minutes.
    pub fn new(db: Database) -> Self {
        Self {
            db,
            window: Duration::from_secs(15 * 60),
            per_account: 5,
            per_address: 20,
        }
    }

    /// `Some(seconds to wait)` when the account or the address is over its limit.
    pub async fn refused(&self, account: &str, address: &str) -> Result<Option<u64>, DbError> {
        let now = now_micros();
        let mut wait = None::<u64>;
        for (key, limit) in [(account, self.per_account), (address, self.per_address)] {
            let row = sqlx::query(
                "SELECT window_start, failures FROM gateway_login_failures WHERE throttle_key = $1",
            )
            .bind(key)
            .fetch_optional(self.db.pool())
            .await?;
            let Some(row) = row else { continue };
            let start: i64 = row.try_get("window_start")?;
            let failures: i64 = row.try_get("failures")?;
            let ends = start + micros(self.window);
            if failures >= limit && ends > now {
                let secs = u64::try_from((ends - now) / 1_000_000).unwrap_or(0) + 1;
                wait = Some(wait.map_or(secs, |w| w.max(secs)));
            }
        }
        Ok(wait)
    }

    /// Counts a failed login against the account and the address.
    pub async fn failed(&self, account: &str, address: &str) -> Result<(), DbError> {
        let now = now_micros();
        let stale = now - micros(self.window);
        for key in [account, address] {
            sqlx::query(
                "INSERT INTO gateway_login_failures (throttle_key, window_start, failures) \
                 VALUES ($1, $2, 1) ON CONFLICT (throttle_key) DO UPDATE SET \
                   failures = CASE WHEN gateway_login_failures.window_start < $3 THEN 1 \
                              ELSE gateway_login_failures.failures + 1 END, \
                   window_start = CASE WHEN gateway_login_failures.window_start < $3 THEN $2 \
                              ELSE gateway_login_failures.window_start END",
            )
            .bind(key)
            .bind(now)
            .bind(stale)
            .execute(self.db.pool())
            .await?;
        }
        Ok(())
    }

    /// Clears the account's counter after a successful login.
    pub async fn succeeded(&self, account: &str) -> Result<(), DbError> {
        sqlx::query("DELETE FROM gateway_login_failures WHERE throttle_key = $1")
            .bind(account)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }

    /// Forgets counters whose window ended (bounded table growth).
    pub async fn sweep(&self) -> Result<u64, DbError> {
        let result = sqlx::query("DELETE FROM gateway_login_failures WHERE window_start < $1")
            .bind(now_micros() - micros(self.window))
            .execute(self.db.pool())
            .await?;
        Ok(result.rows_affected())
    }
}
