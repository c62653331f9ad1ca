import { existsSync, readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { ValidationError, errorMessage } from './errors.js';
import { parsePipeline, type Pipeline } from './pipeline.js';

/** Reads a YAML or JSON document (JSON is YAML), with a clear error naming the file. */
export function readYamlFile(path: string, what: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ValidationError(`cannot read ${what} ${path}: ${errorMessage(err)}`);
  }
  try {
    return parseYaml(text, { prettyErrors: true });
  } catch (err) {
    throw new ValidationError(`${what} ${path} is not valid YAML or JSON: ${errorMessage(err)}`);
  }
}

/**
 * Reads a pipeline file as a document ready to apply: arguments of `run.command` that are
 * relative paths to files beside the pipeline file (like `modules/split.py`) are made
 * absolute, so modules run the same whatever directory Ion was started from. Validation is
 * left to {@link parsePipeline} (on the server), so its errors name the fields as written.
 */
export function loadPipelineDocument(path: string): unknown {
  const doc = readYamlFile(path, 'pipeline file');
  const baseDir = dirname(resolve(path));
  const modules = (doc as { modules?: unknown } | null)?.modules;
  if (!Array.isArray(modules)) return doc;
  for (const module of modules) resolveCommandPaths(module, baseDir);
  return doc;
}

/**
 * Reads a file holding one module, shaped like one entry of a pipeline file (for
 * `ion module put`), with its command paths made absolute as {@link loadPipelineDocument} does.
 */
export function loadModuleDocument(path: string): unknown {
  const doc = readYamlFile(path, 'module file');
  resolveCommandPaths(doc, dirname(resolve(path)));
  return doc;
}

/** Makes `run.command` arguments that name files beside the pipeline file absolute, in place. */
function resolveCommandPaths(module: unknown, baseDir: string): void {
  const command = (module as { run?: { command?: unknown } } | null)?.run?.command;
  if (!Array.isArray(command)) return;
  command.forEach((arg: unknown, i) => {
    if (typeof arg !== 'string' || isAbsolute(arg) || arg.startsWith('-')) return;
    if (i === 0 && !arg.includes('/')) return; // a program looked up on PATH
    const candidate = resolve(baseDir, arg);
    if (existsSync(candidate)) command[i] = candidate;
  });
}

/** Loads and validates a pipeline file; errors name the file, the field and the problem. */
export function loadPipelineFile(path: string): Pipeline {
  try {
    return parsePipeline(loadPipelineDocument(path));
  } catch (err) {
    if (err instanceof ValidationError) {
      throw new ValidationError(
        err.message.replace('invalid pipeline', `invalid pipeline file ${path}`),
        err.issues,
      );
    }
    throw err;
  }
}
