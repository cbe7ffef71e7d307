// ESLint flat config: the recommended rules plus a few that catch real mistakes in this codebase.
import js from '@eslint/js';
import globals from 'globals';

export default [
  { ignores: ['node_modules/', 'types/'] },
  js.configs.recommended,
  {
    languageOptions: {
      ecmaVersion: 2024,
      sourceType: 'module',
      globals: { ...globals.node },
    },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      eqeqeq: ['error', 'always'],
      'no-var': 'error',
      'prefer-const': 'error',
      'no-throw-literal': 'error',
      'no-implicit-coercion': 'error',
      'no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-console': ['error', { allow: ['error'] }],
    },
  },
  {
    // Examples are programs: printing is their job.
    files: ['examples/**/*.js'],
    rules: { 'no-console': 'off' },
  },
];
