/**
 * Runtime classpath of the Apache Kafka broker used by the integration tests.
 *
 * test/kafka/pom.xml names the broker artifact; Maven resolves its runtime dependencies
 * (from the local repository when it can, else from Maven Central) and the resulting
 * classpath is cached in test/kafka/target/classpath.txt, which is git-ignored. Maven runs
 * only when that file is missing, older than the pom, or names a jar that is gone.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { delimiter, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

export const KAFKA_POM = fileURLToPath(new URL('../kafka/pom.xml', import.meta.url));
export const KAFKA_CLASSPATH_FILE = fileURLToPath(
  new URL('../kafka/target/classpath.txt', import.meta.url),
);

/** Returns the broker's classpath (entries joined by the platform's path delimiter). */
export async function kafkaClasspath(): Promise<string> {
  const cached = await readCachedClasspath();
  if (cached !== undefined) return cached;

  await mkdir(dirname(KAFKA_CLASSPATH_FILE), { recursive: true });
  // Write beside the final file and rename, so a concurrent reader never sees half a file.
  const tmp = `${KAFKA_CLASSPATH_FILE}.${process.pid}.tmp`;
  try {
    const offline = await runMaven(['-o'], tmp);
    if (!offline.ok) {
      const online = await runMaven([], tmp);
      if (!online.ok) {
        throw new Error(
          `could not resolve the Kafka broker classpath from ${KAFKA_POM} with Maven.\n` +
            `offline attempt:\n${offline.output}\nonline attempt:\n${online.output}`,
        );
      }
    }
    const classpath = (await readFile(tmp, 'utf8')).trim();
    if (classpath === '') throw new Error(`Maven wrote an empty classpath for ${KAFKA_POM}`);
    await rename(tmp, KAFKA_CLASSPATH_FILE);
    return classpath;
  } finally {
    await rm(tmp, { force: true });
  }
}

async function readCachedClasspath(): Promise<string | undefined> {
  try {
    const [file, pom] = await Promise.all([stat(KAFKA_CLASSPATH_FILE), stat(KAFKA_POM)]);
    if (file.mtimeMs < pom.mtimeMs) return undefined;
    const classpath = (await readFile(KAFKA_CLASSPATH_FILE, 'utf8')).trim();
    if (classpath === '') return undefined;
    // The local Maven repository may have been cleaned since the file was written.
    if (!classpath.split(delimiter).every((entry) => existsSync(entry))) return undefined;
    return classpath;
  } catch {
    return undefined;
  }
}

function runMaven(
  extraArgs: string[],
  outputFile: string,
): Promise<{ ok: boolean; output: string }> {
  const args = [
    '-B',
    '-q',
    ...extraArgs,
    '-f',
    KAFKA_POM,
    'dependency:build-classpath',
    '-Dmdep.includeScope=runtime',
    `-Dmdep.outputFile=${outputFile}`,
  ];
  return new Promise((resolve) => {
    execFile(
      'mvn',
      args,
      { maxBuffer: 16 * 1024 * 1024, timeout: 10 * 60_000 },
      (error, stdout, stderr) => {
        const output = `${stdout}${stderr}`.trim();
        resolve({
          ok: error === null && existsSync(outputFile),
          output: output || String(error ?? ''),
        });
      },
    );
  });
}
