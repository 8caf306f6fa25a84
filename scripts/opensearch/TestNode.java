// A single OpenSearch node for CaseScope's test suites: the real server jar, started
// in-process as org.opensearch.node.Node with its modules as classpath plugins. No
// bootstrap step runs (no security manager, no bootstrap checks, no refusal to run as
// root), which is what lets it start from Maven Central jars without a distribution.
//
// Usage: java -cp 'classes:lib/*' TestNode HOME [HTTP_PORT]
// HTTP_PORT 0 (the default) picks a free port; the node writes it to HOME/logs/http.ports.
// It listens on 127.0.0.1 only and stops (closing the node) on SIGTERM.

import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import org.opensearch.analysis.common.CommonAnalysisPlugin;
import org.opensearch.common.settings.Settings;
import org.opensearch.env.Environment;
import org.opensearch.index.reindex.ReindexPlugin;
import org.opensearch.node.InternalSettingsPreparer;
import org.opensearch.node.Node;
import org.opensearch.plugins.Plugin;
import org.opensearch.transport.Netty4Plugin;

public final class TestNode {
    /** Node's constructor that takes classpath plugins is protected in 2.x. */
    private static final class PluginNode extends Node {
        PluginNode(Environment environment, Collection<Class<? extends Plugin>> plugins) {
            super(environment, plugins, true);
        }
    }

    public static void main(String[] args) throws Exception {
        if (args.length < 1) {
            System.err.println("usage: TestNode HOME [HTTP_PORT]");
            System.exit(2);
        }
        Path home = Paths.get(args[0]).toAbsolutePath();
        Files.createDirectories(home.resolve("data"));
        Files.createDirectories(home.resolve("logs"));
        Settings settings = Settings.builder()
            .put("path.home", home.toString())
            .put("path.data", home.resolve("data").toString())
            .put("path.logs", home.resolve("logs").toString())
            .put("cluster.name", "casescope-test")
            .put("node.name", "node-0")
            .put("discovery.type", "single-node")
            .put("network.host", "127.0.0.1")
            .put("http.port", args.length > 1 ? args[1] : "0")
            .put("transport.port", "0")
            .put("node.portsfile", true)
            // A nearly full CI disk must not turn test indices read-only.
            .put("cluster.routing.allocation.disk.threshold_enabled", false)
            .build();
        List<Class<? extends Plugin>> plugins =
            List.of(Netty4Plugin.class, ReindexPlugin.class, CommonAnalysisPlugin.class);
        Environment environment =
            InternalSettingsPreparer.prepareEnvironment(settings, Map.of(), null, () -> "node-0");
        Node node = new PluginNode(environment, plugins);
        Runtime.getRuntime().addShutdownHook(new Thread(() -> {
            try {
                node.close();
            } catch (Exception error) {
                error.printStackTrace();
            }
        }));
        node.start();
        new CountDownLatch(1).await();
    }
}
