import { describe, expect, it } from 'vitest';
import { normaliseRelativePath } from './safe-path.js';

function accepted(path: string): string {
  const result = normaliseRelativePath(path);
  if (!result.ok) throw new Error(`expected "${path}" to be accepted, got: ${result.reason}`);
  return result.path;
}

function refusal(path: string): string {
  const result = normaliseRelativePath(path);
  if (result.ok) throw new Error(`expected "${path}" to be refused, got: ${result.path}`);
  return result.reason;
}

describe('normaliseRelativePath', () => {
  it('accepts plain and nested relative paths unchanged', () => {
    expect(accepted('a.txt')).toBe('a.txt');
    expect(accepted('sub/dir/b.png')).toBe('sub/dir/b.png');
    expect(accepted('with space/ünïcode.txt')).toBe('with space/ünïcode.txt');
  });

  it('drops "." segments and repeated slashes', () => {
    expect(accepted('./a.txt')).toBe('a.txt');
    expect(accepted('sub/./b.txt')).toBe('sub/b.txt');
    expect(accepted('sub//b.txt')).toBe('sub/b.txt');
  });

  it('accepts names that merely contain dots', () => {
    expect(accepted('..hidden')).toBe('..hidden');
    expect(accepted('a..b/c...txt')).toBe('a..b/c...txt');
    expect(accepted('.env')).toBe('.env');
  });

  it('refuses an empty path', () => {
    expect(refusal('')).toContain('empty');
  });

  it('refuses absolute paths', () => {
    expect(refusal('/etc/passwd')).toContain('absolute');
    expect(refusal('//server/share')).toContain('absolute');
  });

  it('refuses any ".." segment, even one that would stay inside', () => {
    expect(refusal('..')).toContain('..');
    expect(refusal('../x')).toContain('..');
    expect(refusal('a/../../x')).toContain('..');
    expect(refusal('a/../b')).toContain('..');
    expect(refusal('a/..')).toContain('..');
  });

  it('refuses backslashes, so Windows-style escapes cannot slip through', () => {
    expect(refusal('..\\x')).toContain('backslash');
    expect(refusal('a\\b.txt')).toContain('backslash');
  });

  it('refuses a NUL byte', () => {
    expect(refusal('a\0b')).toContain('NUL');
  });

  it('refuses paths that name a directory rather than a file', () => {
    expect(refusal('.')).toContain('file');
    expect(refusal('./')).toContain('file');
    expect(refusal('sub/')).toContain('file');
  });
});
