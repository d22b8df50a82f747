package dev.slotline.bench;

import io.debezium.embedded.Connect;
import io.debezium.engine.DebeziumEngine;
import io.debezium.engine.RecordChangeEvent;
import io.debezium.engine.format.ChangeEventFormat;
import java.io.FileInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.util.Properties;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicLong;
import org.apache.kafka.connect.data.Struct;
import org.apache.kafka.connect.source.SourceRecord;

/**
 * The benchmark's "Debezium embedded, no-op handler": the Debezium engine with the PostgreSQL
 * connector, records handed over as Kafka Connect SourceRecords (no serialisation), a handler that
 * only counts them. It measures how fast Debezium decodes the stream and builds its change events,
 * with nothing written anywhere.
 *
 * <p>Usage: {@code EmbeddedNoop <engine.properties> <expected> <topic>}. Counts records of {@code
 * topic} with a value (data changes, not tombstones) until {@code expected} have been seen, then
 * prints one JSON line on stdout and keeps running, so the benchmark can read the process's peak
 * RSS before it stops it (SIGTERM: the shutdown hook closes the engine). Times are milliseconds
 * since this program started (System.nanoTime()).
 *
 * <p>Output lines, one JSON object each: {@code {"event":"task-started","atMs":…}} when the
 * connector task has started (the analogue of slotline's "replication started"), and {@code
 * {"event":"done","count":…,"taskStartedAtMs":…,"firstAtMs":…,"lastAtMs":…,"snapshotReads":…}}
 * (snapshotReads: snapshot records seen and not counted, 0 with snapshot.mode no_data); {@code
 * {"event":"failed","message":…}} if the engine stops first.
 */
public final class EmbeddedNoop {
  private static final long T0 = System.nanoTime();

  private static double sinceStartMs() {
    return Math.round((System.nanoTime() - T0) / 1e3) / 1e3;
  }

  private static synchronized void emit(String json) {
    System.out.println(json);
    System.out.flush();
  }

  private static String quote(String s) {
    StringBuilder b = new StringBuilder("\"");
    for (char c : (s == null ? "" : s).toCharArray()) {
      if (c == '"' || c == '\\') b.append('\\').append(c);
      else if (c < 0x20) b.append(String.format("\\u%04x", (int) c));
      else b.append(c);
    }
    return b.append('"').toString();
  }

  public static void main(String[] args) throws Exception {
    if (args.length != 3) {
      System.err.println("usage: EmbeddedNoop <engine.properties> <expected> <topic>");
      System.exit(2);
    }
    Properties props = new Properties();
    try (InputStream in = new FileInputStream(args[0])) {
      props.load(in);
    }
    long expected = Long.parseLong(args[1]);
    String topic = args[2];

    AtomicLong count = new AtomicLong();
    AtomicLong snapshotReads = new AtomicLong();
    AtomicLong firstNs = new AtomicLong();
    double[] taskStartedAt = {Double.NaN};
    CountDownLatch finished = new CountDownLatch(1);

    DebeziumEngine<RecordChangeEvent<SourceRecord>> engine =
        DebeziumEngine.create(ChangeEventFormat.of(Connect.class))
            .using(props)
            .using(
                new DebeziumEngine.ConnectorCallback() {
                  @Override
                  public void taskStarted() {
                    taskStartedAt[0] = sinceStartMs();
                    emit("{\"event\":\"task-started\",\"atMs\":" + taskStartedAt[0] + "}");
                  }
                })
            .using(
                (success, message, error) -> {
                  if (count.get() < expected) {
                    String why = message + (error == null ? "" : ": " + error);
                    emit("{\"event\":\"failed\",\"message\":" + quote(why) + "}");
                  }
                  finished.countDown();
                })
            .notifying(
                (RecordChangeEvent<SourceRecord> event) -> {
                  SourceRecord r = event.record();
                  if (r.value() == null || !topic.equals(r.topic())) return;
                  // Snapshot reads ("r") would mean the slot's backlog was not what was counted.
                  if (r.value() instanceof Struct v
                      && v.schema().field("op") != null
                      && "r".equals(v.getString("op"))) {
                    snapshotReads.incrementAndGet();
                    return;
                  }
                  firstNs.compareAndSet(0, System.nanoTime());
                  long n = count.incrementAndGet();
                  if (n == expected) {
                    double last = sinceStartMs();
                    double first = Math.round((firstNs.get() - T0) / 1e3) / 1e3;
                    emit(
                        "{\"event\":\"done\",\"count\":"
                            + n
                            + ",\"taskStartedAtMs\":"
                            + (Double.isNaN(taskStartedAt[0]) ? "null" : taskStartedAt[0])
                            + ",\"firstAtMs\":"
                            + first
                            + ",\"lastAtMs\":"
                            + last
                            + ",\"snapshotReads\":"
                            + snapshotReads.get()
                            + "}");
                  }
                })
            .build();

    ExecutorService executor = Executors.newSingleThreadExecutor();
    Runtime.getRuntime()
        .addShutdownHook(
            new Thread(
                () -> {
                  try {
                    engine.close();
                    finished.await(20, TimeUnit.SECONDS);
                  } catch (IOException | InterruptedException e) {
                    // exiting anyway
                  }
                }));
    executor.execute(engine);
    finished.await();
    executor.shutdown();
    System.exit(count.get() >= expected ? 0 : 1);
  }
}
