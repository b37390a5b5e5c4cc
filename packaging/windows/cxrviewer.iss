; Inno Setup 6 script for the Windows installer of cxrviewer (not built or tested in CI: no Windows runner).
;
; Build on Windows, from the repository root, after the one-folder build:
;   set CXR_BUILD=cpu
;   .venv\Scripts\python packaging\make_icons.py build\icons
;   .venv\Scripts\python -m PyInstaller --noconfirm --distpath dist --workpath build\pyinstaller packaging\cxrviewer.spec
;   dist\cxrviewer\cxrviewer-cli.exe --self-test          (must exit 0 before shipping)
;   "C:\Program Files (x86)\Inno Setup 6\ISCC.exe" /DAppVersion=0.1.0 packaging\windows\cxrviewer.iss
; Output: dist\installer\cxrviewer-<version>-setup.exe. Per-user install by default (no admin rights needed);
; the dialog offers an all-users install. .dcm/.dicom are associated with the viewer when the task is ticked.
; GPU build: set CXR_BUILD=gpu before PyInstaller and /DFlavour=gpu here (a separate, much larger installer).

#ifndef AppVersion
  #define AppVersion "0.1.0"
#endif
#ifndef Flavour
  #define Flavour "cpu"
#endif

[Setup]
AppId={{6E0C2E55-3F0B-4C55-9C1F-2B8F8E0C7A11}
AppName=cxrviewer
AppVersion={#AppVersion}
AppVerName=cxrviewer {#AppVersion} ({#Flavour})
AppPublisher=cxrviewer developers
AppComments=Chest X-ray viewer with local AI. Research use only - not for diagnosis.
DefaultDirName={autopf}\cxrviewer
DefaultGroupName=cxrviewer
PrivilegesRequired=lowest
PrivilegesRequiredOverridesAllowed=dialog
ArchitecturesAllowed=x64compatible
ArchitecturesInstallIn64BitMode=x64compatible
OutputDir=..\..\dist\installer
OutputBaseFilename=cxrviewer-{#AppVersion}-{#Flavour}-setup
SetupIconFile=..\..\build\icons\cxrviewer.ico
UninstallDisplayIcon={app}\cxrviewer.exe
LicenseFile=..\..\packaging\windows\LICENSE-NOTICE.txt
Compression=lzma2/max
SolidCompression=yes
WizardStyle=modern
ChangesAssociations=yes

[Tasks]
Name: "desktopicon"; Description: "{cm:CreateDesktopIcon}"; GroupDescription: "{cm:AdditionalIcons}"; Flags: unchecked
Name: "assocdicom"; Description: "Open DICOM files (.dcm, .dicom) with cxrviewer"; GroupDescription: "File associations:"

[Files]
Source: "..\..\dist\cxrviewer\*"; DestDir: "{app}"; Flags: ignoreversion recursesubdirs createallsubdirs

[Icons]
Name: "{group}\cxrviewer"; Filename: "{app}\cxrviewer.exe"
Name: "{group}\cxrviewer self-test"; Filename: "{cmd}"; Parameters: "/k ""{app}\cxrviewer-cli.exe"" --self-test"
Name: "{group}\{cm:UninstallProgram,cxrviewer}"; Filename: "{uninstallexe}"
Name: "{autodesktop}\cxrviewer"; Filename: "{app}\cxrviewer.exe"; Tasks: desktopicon

[Registry]
; ProgID and "Open with" entries (HKCU for per-user installs, HKLM for all users: HKA picks).
Root: HKA; Subkey: "Software\Classes\cxrviewer.dicom"; ValueType: string; ValueData: "DICOM image"; Flags: uninsdeletekey; Tasks: assocdicom
Root: HKA; Subkey: "Software\Classes\cxrviewer.dicom\DefaultIcon"; ValueType: string; ValueData: "{app}\cxrviewer.exe,0"; Tasks: assocdicom
Root: HKA; Subkey: "Software\Classes\cxrviewer.dicom\shell\open\command"; ValueType: string; ValueData: """{app}\cxrviewer.exe"" ""%1"""; Tasks: assocdicom
Root: HKA; Subkey: "Software\Classes\.dcm\OpenWithProgids"; ValueType: string; ValueName: "cxrviewer.dicom"; ValueData: ""; Flags: uninsdeletevalue; Tasks: assocdicom
Root: HKA; Subkey: "Software\Classes\.dicom\OpenWithProgids"; ValueType: string; ValueName: "cxrviewer.dicom"; ValueData: ""; Flags: uninsdeletevalue; Tasks: assocdicom
Root: HKA; Subkey: "Software\Classes\Applications\cxrviewer.exe\SupportedTypes"; ValueType: string; ValueName: ".dcm"; ValueData: ""; Flags: uninsdeletekey; Tasks: assocdicom

[Run]
Filename: "{app}\cxrviewer.exe"; Description: "{cm:LaunchProgram,cxrviewer}"; Flags: nowait postinstall skipifsilent
