//! Rule import (stream reading, planning, storing) and rule selection.

use super::convert::*;
use super::*;

impl DetectApi {
    /// Imports the built-in rule pack when the rule store is empty (first start).
    pub async fn seed_builtin_rules(&self) -> Result<(), ApiError> {
        if !self.settings.seed_builtin_rules || self.repo.rule_count().await.map_err(db_error)? > 0
        {
            return Ok(());
        }
        let files = casescope_sigma::built_in_texts()
            .into_iter()
            .map(|(path, text)| ImportFile {
                path: path.trim_start_matches("builtin:").to_string(),
                bytes: text.into_bytes(),
            })
            .collect();
        let options = ImportOptions {
            source_label: "builtin".into(),
            import_disabled: false,
        };
        let (planned, version) = self.import(files, options, false).await?;
        tracing::info!(
            rules = planned.added,
            ruleset_version = version,
            "built-in rule pack imported"
        );
        Ok(())
    }

    /// Plans and (unless `dry_run`) stores an import; returns the plan and the version.
    pub async fn import(
        &self,
        files: Vec<ImportFile>,
        options: ImportOptions,
        dry_run: bool,
    ) -> Result<(Planned, i64), ApiError> {
        let existing: HashMap<String, RuleRow> = self
            .repo
            .all_rules(true)
            .await
            .map_err(db_error)?
            .into_iter()
            .map(|r| (r.id.clone(), r))
            .collect();
        let mapping = self.mapping.clone();
        let max = self.settings.max_rule_file_bytes;
        let now = casescope_db::now_micros();
        let planned = tokio::task::spawn_blocking(move || {
            let (docs, refused) = crate::import::documents(files, max);
            crate::import::plan(&docs, refused, &existing, &options, &mapping, now)
        })
        .await
        .map_err(|e| ApiError::internal_logged("rule import crashed", e))?;
        if dry_run {
            let (version, _) = self.repo.ruleset_version().await.map_err(db_error)?;
            return Ok((planned, version));
        }
        // Read before the transaction: SQLite has one connection.
        let (current, _) = self.repo.ruleset_version().await.map_err(db_error)?;
        let mut tx = self.repo.db().begin().await.map_err(db_error)?;
        for row in &planned.rows {
            self.repo
                .upsert_rule(&mut tx, row)
                .await
                .map_err(db_error)?;
        }
        let version = if planned.changed.is_empty() {
            current
        } else {
            let version = self
                .repo
                .bump_version(
                    &mut tx,
                    &planned.changed,
                    self.settings.change_log_versions,
                    now,
                )
                .await
                .map_err(db_error)?;
            self.repo
                .request_all(&mut tx, version, now)
                .await
                .map_err(db_error)?;
            if planned.correlations_changed {
                self.repo.touch_all_cases(&mut tx).await.map_err(db_error)?;
            }
            version
        };
        tx.commit().await.map_err(|e| db_error(e.into()))?;
        self.wake.notify_one();
        Ok((planned, version))
    }

    pub(super) async fn read_import(
        &self,
        mut stream: Streaming<pb::ImportRulesChunk>,
    ) -> Result<(Vec<ImportFile>, pb::ImportRulesOptions), ApiError> {
        use pb::import_rules_chunk::Part;
        let mut options = None;
        let mut files: Vec<ImportFile> = Vec::new();
        let mut declared: u64 = 0;
        let mut total: u64 = 0;
        let mut first = true;
        while let Some(chunk) = stream.message().await.map_err(|status| {
            ApiError::invalid_field("STREAM_FAILED", "stream", status.message().to_string())
        })? {
            match chunk.part {
                Some(Part::Options(o)) if first => options = Some(o),
                Some(Part::Options(_)) => {
                    return Err(ApiError::invalid_field(
                        "OPTIONS_NOT_FIRST",
                        "options",
                        "options may only be the first message",
                    ));
                }
                Some(Part::File(header)) => {
                    if let Some(last) = files.last()
                        && last.bytes.len() as u64 != declared
                    {
                        return Err(ApiError::invalid_field(
                            "FILE_SIZE_MISMATCH",
                            "data",
                            format!(
                                "{}: {} bytes received, {declared} declared",
                                last.path,
                                last.bytes.len()
                            ),
                        ));
                    }
                    let path = header.path.trim().to_string();
                    let lower = path.to_lowercase();
                    if path.is_empty()
                        || path.len() > 1024
                        || !(lower.ends_with(".yml")
                            || lower.ends_with(".yaml")
                            || lower.ends_with(".zip"))
                    {
                        return Err(ApiError::invalid_field(
                            "PATH_INVALID",
                            "file.path",
                            format!(
                                "{path:?}: a relative path ending in .yml, .yaml or .zip is required"
                            ),
                        ));
                    }
                    if header.size_bytes > self.settings.max_rule_file_bytes {
                        return Err(ApiError::invalid_field(
                            "FILE_TOO_LARGE",
                            "file.size_bytes",
                            format!(
                                "{path}: {} bytes is above the maximum {}",
                                header.size_bytes, self.settings.max_rule_file_bytes
                            ),
                        ));
                    }
                    declared = header.size_bytes;
                    files.push(ImportFile {
                        path,
                        bytes: Vec::new(),
                    });
                }
                Some(Part::Data(data)) => {
                    let Some(file) = files.last_mut() else {
                        return Err(ApiError::invalid_field(
                            "DATA_BEFORE_FILE",
                            "data",
                            "file data before any file header",
                        ));
                    };
                    if data.data.len() > self.settings.max_import_chunk_bytes {
                        return Err(ApiError::invalid_field(
                            "CHUNK_TOO_LARGE",
                            "data.data",
                            format!(
                                "chunks are at most {} bytes",
                                self.settings.max_import_chunk_bytes
                            ),
                        ));
                    }
                    total += data.data.len() as u64;
                    if file.bytes.len() as u64 + data.data.len() as u64 > declared
                        || total > self.settings.max_import_bytes
                    {
                        return Err(ApiError::invalid_field(
                            "FILE_TOO_LARGE",
                            "data",
                            format!(
                                "{}: more bytes than declared, or the import exceeds {} bytes",
                                file.path, self.settings.max_import_bytes
                            ),
                        ));
                    }
                    file.bytes.extend_from_slice(&data.data);
                }
                None => {}
            }
            first = false;
        }
        if let Some(last) = files.last()
            && last.bytes.len() as u64 != declared
        {
            return Err(ApiError::invalid_field(
                "FILE_SIZE_MISMATCH",
                "data",
                format!(
                    "{}: {} bytes received, {declared} declared",
                    last.path,
                    last.bytes.len()
                ),
            ));
        }
        if files.is_empty() {
            return Err(ApiError::invalid_field(
                "NO_FILES",
                "file",
                "the import holds no file",
            ));
        }
        Ok((files, options.unwrap_or_default()))
    }

    pub(super) fn selected(selector: &pb::RuleSelector, row: &RuleRow) -> bool {
        let ids = selector.rule_ids.is_empty()
            || selector.rule_ids.iter().any(|r| r.value.trim() == row.id);
        let levels = selector.levels.is_empty()
            || selector
                .levels
                .iter()
                .any(|l| level_text(*l) == Some(row.level.as_str()));
        let statuses = selector.statuses.is_empty()
            || selector
                .statuses
                .iter()
                .any(|s| status_text(*s) == Some(row.status.as_str()));
        let tags = selector.tags.is_empty() || {
            let tags = list(&row.tags);
            selector
                .tags
                .iter()
                .any(|t| tags.iter().any(|tag| tag.eq_ignore_ascii_case(t.trim())))
        };
        let logsource = selector.logsource.as_ref().is_none_or(|ls| {
            (ls.product.is_empty() || ls.product == row.ls_product)
                && (ls.category.is_empty() || ls.category == row.ls_category)
                && (ls.service.is_empty() || ls.service == row.ls_service)
        });
        ids && levels && statuses && tags && logsource
    }
}
