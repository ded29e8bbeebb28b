//! Reloading the router's config while serving: [`handoff_core::reload`] watches the file
//! and SIGHUP; here each new config is compiled into a catalog and swapped in.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
};

use handoff_core::{config::ConfigError, reload};

use crate::{service::Router, store::Store};

/// Reads `path` (with `env`'s overrides) and swaps it into `router`.
pub fn reload_now<S: Store>(
    router: &Router<S>,
    path: &Path,
    env: &[(String, String)],
) -> Result<(), ConfigError> {
    reload::reload_now(path, env, &|config, origin| router.reload(config, origin))
}

/// Watches `path` and SIGHUP until `shutdown` resolves, reloading `router` on each change.
pub async fn watch<S: Store>(
    router: Arc<Router<S>>,
    path: PathBuf,
    env: Vec<(String, String)>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    reload::watch(path, env, shutdown, move |config, origin| {
        router.reload(config, origin)
    })
    .await;
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, time::Duration};

    use handoff_core::id::{ClientUserId, SdkAppId, SessionId};

    use super::*;
    use crate::engine::Handoff;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn config_with_group(group: u64) -> String {
        format!(
            "[[apps]]\nsdk_app_id = 1400000001\n[[apps.groups]]\nid = {group}\nname = \"g\"\n\
             [[apps.agents]]\nid = \"ann@example.com\"\ngroups = [{group}]\n"
        )
    }

    /// A directory of its own under the system's temp dir, removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> std::io::Result<Self> {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default();
            let dir =
                std::env::temp_dir().join(format!("handoff-{name}-{}-{nanos}", std::process::id()));
            std::fs::create_dir_all(&dir)?;
            Ok(Self(dir))
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn router(
        path: &Path,
    ) -> Result<Arc<Router<crate::store::MemoryStore>>, Box<dyn std::error::Error>> {
        let config = handoff_core::config::load(path, Vec::new())?;
        let catalog = crate::engine::Catalog::from_config(&config, path)?;
        let store = crate::store::MemoryStore::new(config.router.assignment_ttl.get());
        Ok(Arc::new(Router::new(
            catalog,
            store,
            Arc::new(crate::SystemClock),
        )))
    }

    async fn answered_group(
        router: &Router<crate::store::MemoryStore>,
    ) -> Result<Option<u64>, Box<dyn std::error::Error>> {
        let handoff = Handoff {
            app: SdkAppId::new(1_400_000_001)?,
            session: SessionId::parse("probe")?,
            client_user: ClientUserId::parse("probe")?,
            event_time: std::time::SystemTime::now(),
            platform: String::new(),
            channel: String::new(),
            attributes: BTreeMap::new(),
        };
        let (_, answer) = router.explain(&handoff).await?;
        Ok(answer.group.map(|g| g.get()))
    }

    #[tokio::test]
    async fn a_bad_file_is_refused_and_a_good_one_swapped_in() -> TestResult {
        let scratch = Scratch::new("reload")?;
        let path = scratch.0.join("handoff.toml");
        std::fs::write(&path, config_with_group(6521))?;
        let router = router(&path)?;
        assert_eq!(answered_group(&router).await?, Some(6521));

        let bad = config_with_group(7000).replace("groups = [7000]", "groups = [7001]");
        std::fs::write(&path, bad)?;
        let err = reload_now(&router, &path, &[])
            .err()
            .ok_or("accepted a bad file")?;
        assert!(
            err.to_string().contains("group 7001 is not defined"),
            "{err}"
        );
        assert_eq!(
            answered_group(&router).await?,
            Some(6521),
            "the running config stays"
        );

        std::fs::write(
            &path,
            config_with_group(7000).replace(
                "name = \"g\"",
                "name = \"g\"\n[[apps.rules]]\nname = \"r\"\nwhen = 'bad syntax ('\n",
            ),
        )?;
        let err = reload_now(&router, &path, &[])
            .err()
            .ok_or("accepted bad CEL")?;
        assert_eq!(err.key, "apps[0].rules[0].when");

        std::fs::write(&path, config_with_group(7000))?;
        reload_now(&router, &path, &[])?;
        assert_eq!(answered_group(&router).await?, Some(7000));
        Ok(())
    }

    #[tokio::test]
    async fn the_watcher_reloads_when_the_file_is_replaced() -> TestResult {
        let scratch = Scratch::new("watch")?;
        let path = scratch.0.join("handoff.toml");
        std::fs::write(&path, config_with_group(6521))?;
        let router = router(&path)?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let watcher = tokio::spawn(watch(router.clone(), path.clone(), Vec::new(), async {
            let _ = stopped.await;
        }));
        // Give the watcher a moment to register before changing the file.
        tokio::time::sleep(Duration::from_millis(100)).await;

        // A bad replacement is ignored ...
        std::fs::write(scratch.0.join("next.toml"), "not = [valid")?;
        std::fs::rename(scratch.0.join("next.toml"), &path)?;
        tokio::time::sleep(reload::SETTLE * 3).await;
        assert_eq!(answered_group(&router).await?, Some(6521));

        // ... and a good one, written the way editors do (write aside, rename over), lands.
        std::fs::write(scratch.0.join("next.toml"), config_with_group(7000))?;
        std::fs::rename(scratch.0.join("next.toml"), &path)?;
        let mut group = None;
        for _ in 0..100 {
            group = answered_group(&router).await?;
            if group == Some(7000) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(group, Some(7000), "the watcher never reloaded");
        let _ = stop.send(());
        watcher.await?;
        Ok(())
    }
}
