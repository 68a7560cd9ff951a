; The Windows setup of Relais, built by scripts/build-windows.sh (makensis -DVERSION -DSTAGE -DOUTFILE [-DSIGN_CMD]).
;
; Default: for the current user, without administrator rights, in %LOCALAPPDATA%\Programs\Relais; the agent and the
; tray start at logon from the user's Run key (written by `relais install --user`, see agent/autostart.py for why
; not a scheduled task). /ALLUSERS (from an administrator prompt; what a Remote Desktop or Citrix server needs):
; in Program Files, the machine's Run key, so every user's session starts its own agent, and the inbound firewall
; rule for the practice's peer port. Silent: /S. The uninstaller removes the program and the autostart entries and
; keeps each user's data folder (%LOCALAPPDATA%\relais: send queue, traces, keys).

Unicode true
Target amd64-unicode
ManifestDPIAware true
!ifndef COMPRESSOR
!define COMPRESSOR "/SOLID lzma"  ; 45 MB; RELAIS_NSIS_COMPRESSOR=zlib builds faster for trials
!endif
SetCompressor ${COMPRESSOR}
RequestExecutionLevel user

!include "MUI2.nsh"
!include "LogicLib.nsh"
!include "FileFunc.nsh"

!define UNINST_KEY "Software\Microsoft\Windows\CurrentVersion\Uninstall\Relais"
!ifdef SIGN_CMD
!uninstfinalize '${SIGN_CMD} "%1"'
!endif

Name "Relais ${VERSION}"
OutFile "${OUTFILE}"
InstallDir "$LOCALAPPDATA\Programs\Relais"
BrandingText "Relais ${VERSION}"
VIProductVersion "${VERSION}.0"
VIAddVersionKey /LANG=1036 "ProductName" "Relais"
VIAddVersionKey /LANG=1036 "FileDescription" "Installation de Relais (cartes CPS et Vitale, DMP, INSi, MSSanté)"
VIAddVersionKey /LANG=1036 "FileVersion" "${VERSION}"
VIAddVersionKey /LANG=1036 "ProductVersion" "${VERSION}"
VIAddVersionKey /LANG=1036 "LegalCopyright" "Relais"

Var AllUsers

!define MUI_ABORTWARNING
!insertmacro MUI_PAGE_DIRECTORY
!insertmacro MUI_PAGE_INSTFILES
!insertmacro MUI_UNPAGE_CONFIRM
!insertmacro MUI_UNPAGE_INSTFILES
!insertmacro MUI_LANGUAGE "French"

!macro ChooseMode UN
Function ${UN}ChooseMode
  StrCpy $AllUsers 0
  ${GetParameters} $R0
  ClearErrors
  ${GetOptions} $R0 "/ALLUSERS" $R1
  ${IfNot} ${Errors}
    UserInfo::GetAccountType
    Pop $R2
    ${If} $R2 != "admin"
      MessageBox MB_ICONSTOP "L'installation pour tous les utilisateurs (/ALLUSERS) doit être lancée en administrateur." /SD IDOK
      SetErrorLevel 740
      Quit
    ${EndIf}
    StrCpy $AllUsers 1
    SetShellVarContext all
  ${EndIf}
FunctionEnd
!macroend
!insertmacro ChooseMode ""
!insertmacro ChooseMode "un."

Function .onInit
  StrCpy $R9 "$LOCALAPPDATA\Programs\Relais"  ; the user's default, before ChooseMode switches to all users
  Call ChooseMode
  ${If} $AllUsers == 1
  ${AndIf} $INSTDIR == $R9
    StrCpy $INSTDIR "$PROGRAMFILES64\Relais"
  ${EndIf}
FunctionEnd

Function un.onInit
  Call un.ChooseMode
FunctionEnd

Section "Relais"
  SetOutPath "$INSTDIR"
  File /r "${STAGE}\*"
  WriteUninstaller "$INSTDIR\uninstall.exe"

  ; Programs and Features (Apps) entry, in the user's or the machine's registry (SHCTX follows the mode).
  ${If} $AllUsers == 1
    StrCpy $R0 '"$INSTDIR\uninstall.exe" /ALLUSERS'
  ${Else}
    StrCpy $R0 '"$INSTDIR\uninstall.exe"'
  ${EndIf}
  WriteRegStr SHCTX "${UNINST_KEY}" "DisplayName" "Relais"
  WriteRegStr SHCTX "${UNINST_KEY}" "DisplayVersion" "${VERSION}"
  WriteRegStr SHCTX "${UNINST_KEY}" "Publisher" "Relais"
  WriteRegStr SHCTX "${UNINST_KEY}" "InstallLocation" "$INSTDIR"
  WriteRegStr SHCTX "${UNINST_KEY}" "DisplayIcon" "$INSTDIR\python\pythonw.exe"
  WriteRegStr SHCTX "${UNINST_KEY}" "UninstallString" "$R0"
  WriteRegStr SHCTX "${UNINST_KEY}" "QuietUninstallString" "$R0 /S"
  WriteRegDWORD SHCTX "${UNINST_KEY}" "NoModify" 1
  WriteRegDWORD SHCTX "${UNINST_KEY}" "NoRepair" 1
  ${GetSize} "$INSTDIR" "/S=0K" $R1 $R2 $R3
  WriteRegDWORD SHCTX "${UNINST_KEY}" "EstimatedSize" $R1

  CreateDirectory "$SMPROGRAMS\Relais"
  CreateShortcut "$SMPROGRAMS\Relais\Relais.lnk" "$INSTDIR\relaisw.exe" "tray" "$INSTDIR\python\pythonw.exe"

  ; Compiled bytecode now, so the agent does not compile at each start (Program Files is read-only to users).
  DetailPrint "Préparation de Python…"
  nsExec::ExecToLog '"$INSTDIR\python\python.exe" -m compileall -q "$INSTDIR\python\Lib\site-packages"'
  Pop $R0

  ; Start at logon (the Run key), the firewall rule with /ALLUSERS, and, per user, start the agent and tray now.
  ${If} $AllUsers == 1
    nsExec::ExecToLog '"$INSTDIR\relais.exe" install --all-users'
  ${Else}
    nsExec::ExecToLog '"$INSTDIR\relais.exe" install --user'
  ${EndIf}
  Pop $R0
  ${If} $R0 != 0
    DetailPrint "« relais install » a échoué (code $R0) : le démarrage automatique n'est pas en place."
    SetErrorLevel 3
  ${EndIf}
SectionEnd

Section "Uninstall"
  ; The Run values (and the firewall rule with /ALLUSERS); this session's agent is stopped so its files go.
  ${If} $AllUsers == 1
    nsExec::ExecToLog '"$INSTDIR\relais.exe" uninstall --all-users'
  ${Else}
    nsExec::ExecToLog '"$INSTDIR\relais.exe" uninstall'
  ${EndIf}
  Pop $R0
  Delete "$SMPROGRAMS\Relais\Relais.lnk"
  RMDir "$SMPROGRAMS\Relais"
  ; A file still in use (another session's agent on a shared server) goes at the next restart.
  RMDir /r /REBOOTOK "$INSTDIR\python"
  Delete /REBOOTOK "$INSTDIR\relais.exe"
  Delete /REBOOTOK "$INSTDIR\relaisw.exe"
  Delete "$INSTDIR\uninstall.exe"
  RMDir /REBOOTOK "$INSTDIR"
  DeleteRegKey SHCTX "${UNINST_KEY}"
SectionEnd
